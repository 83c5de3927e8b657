/*
 * judge: monitor-srv's pure decisions, kept apart for cmocka
 * (tests/unit/test_monitor_judge.c).
 *
 *   - a probe's outcome (a gRPC code and a grpc.health status) as a
 *     check status: only SERVING passes; NOT_SERVING, SERVICE_UNKNOWN,
 *     a node that has no health service, is unreachable or times out is
 *     critical (Consul's mapping; there is no "warning" from a probe);
 *   - flap damping: a check's status changes only after N consecutive
 *     results that agree on the new one; its first result counts at once;
 *   - the worst of several statuses (critical > warning > passing);
 *   - rendezvous hashing: the monitor that owns a node is the one with
 *     the highest hash of (monitor, node), so when one of n monitors goes
 *     only its nodes move, each to one of the others;
 *   - a Prometheus exposition read into a node's summary (Stats).
 */
#ifndef MONITOR_JUDGE_H
#define MONITOR_JUDGE_H

#include <stddef.h>
#include <stdint.h>

enum mon_status {
	MON_UNSPECIFIED = 0,
	MON_PASSING = 1,
	MON_WARNING = 2,
	MON_CRITICAL = 3,
};

/* "passing", "warning", "critical", "unspecified". */
const char *mon_status_name(int status);

/* grpc.health.v1 ServingStatus values. */
#define MON_HEALTH_SERVING 1
#define MON_HEALTH_NOT_SERVING 2
#define MON_HEALTH_SERVICE_UNKNOWN 3

/* The status of a probe that ended with code (a gRPC code) and, for
 * code 0, serving; a line saying why into out. */
int mon_probe_status(int code, int serving, const char *message, char *out,
    size_t outlen);

struct mon_damper {
	int status;             /* damped; MON_UNSPECIFIED before the first */
	int candidate;          /* the status the last results agree on */
	int count;              /* how many in a row */
};

/* Feeds one result: 1 when the damped status changed (the first result
 * always does), else 0. threshold < 1 counts as 1. */
int mon_damper_feed(struct mon_damper *d, int result, int threshold);

int mon_worst(int a, int b);

/* The index in monitors[0..n) that owns node (n > 0). */
size_t mon_owner(const char *const *monitors, size_t n, const char *node);

struct mon_stats {
	double requests;        /* every platform_rpc_requests_total */
	double errors;          /* those with code != OK */
	double p50_ms, p90_ms, p99_ms;  /* from the summed histogram */
	double memory_bytes;    /* process_resident_memory_bytes */
};

/* Reads a /metrics body; lines it does not know are skipped. */
void mon_stats_parse(const char *text, struct mon_stats *out);

#endif
