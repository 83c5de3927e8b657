/*
 * fleet: monitor-srv's picture of the fleet and the work that keeps it.
 *
 * The nodes come from a discovery Watch on every service. Each node this
 * replica owns (rendezvous hashing of node ids over the live monitor-srv
 * nodes, see judge.h) is probed with grpc.health.v1 Check every interval
 * of its service, each at its own jittered time, by a few prober
 * threads; its pushed checks arrive by ReportCheck and turn critical
 * when their TTL passes. Each check's status is damped (N consecutive
 * results); a node's status is the worst of its checks', a service's the
 * worst of its nodes'. Every change of a node's status is a platform
 * event and a WatchStatus message. Pushed checks are stored before their
 * report is answered, a node's new status before its next probe, the
 * per-service settings before they are answered (store.h); what failed
 * to be stored is written again by the sweeper. All is read back at
 * start, and a node's rows when a replica takes it over.
 */
#ifndef MONITOR_FLEET_H
#define MONITOR_FLEET_H

#include <stdint.h>

#include "platform/monitor/v1/monitor.pb-c.h"
#include "platform/pg.h"
#include "platform/server.h"

struct fleet_opts {
	int64_t interval_ms;            /* probe defaults */
	int64_t timeout_ms;
	int flap_threshold;
	int64_t scrape_interval_ms;
	int probers;
};

int fleet_start(plat_server *srv, struct pg_store *store,
    const struct fleet_opts *o);
/* Stops the watch and the threads and ends every WatchStatus stream. */
void fleet_stopping(void);
void fleet_free(void);

/* The handlers' work, input already checked. Each answers the call
 * (plat_respond_now) or returns a status. */
int fleet_report(plat_ctx *ctx,
    const Platform__Monitor__V1__ReportCheckRequest *r);
/* Without local, the other replicas' parts too (see the proto). */
int fleet_get_status(plat_ctx *ctx, const char *service, int local);
int fleet_list_checks(plat_ctx *ctx, const char *service, const char *node,
    int local);
int fleet_watch(plat_ctx *ctx, const char *service, plat_stream *st);
int fleet_set_settings(plat_ctx *ctx,
    const Platform__Monitor__V1__ServiceSettings *s);
int fleet_get_settings(plat_ctx *ctx, const char *service);
int fleet_stats(plat_ctx *ctx, const char *service, const char *node,
    int local);

#endif
