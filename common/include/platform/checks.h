/*
 * checks: a server's own health checks ("database reachable"), run in
 * the background and reported by the server itself to monitor-srv.
 *
 * A service declares its checks from init with plat_check_declare; the
 * runtime runs each every interval on one thread of its own (never on a
 * request's path), and after each run:
 *   - sends the result to monitor-srv (found through discovery under the
 *     name "monitor") as a pushed check with a TTL of three intervals
 *     (at least 2 s), so a node that stops reporting (hung, stopped,
 *     partitioned) turns critical there. No monitor-srv, or a slow
 *     one, costs nothing but the report (1 s deadline, fail-open,
 *     logged once per outage);
 *   - serves it as the grpc.health.v1 service "check.NAME" (SERVING
 *     unless critical), for a readiness probe that wants to ask;
 *   - sets the series platform_check_status{check="NAME"} (1 passing,
 *     2 warning, 3 critical).
 * The server's own "" and service health stay SERVING while it runs: a
 * server whose database is down still answers (cached reads, clear
 * UNAVAILABLE errors) and says so through its check, rather than
 * vanishing from every probe and balancer at once.
 */
#ifndef PLATFORM_CHECKS_H
#define PLATFORM_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "platform/server.h"

enum plat_check_status {
	PLAT_CHECK_PASSING = 1,
	PLAT_CHECK_WARNING = 2,
	PLAT_CHECK_CRITICAL = 3,
};

/* Runs the check within timeout_ms and says how it went, with a line of
 * output (may be left empty) for the operator. */
typedef enum plat_check_status (*plat_check_fn)(void *arg,
    int64_t timeout_ms, char *output, size_t outlen);

#define PLAT_CHECKS_MAX 8
#define PLAT_CHECK_NAME_MAX 64

/* From init: name is [a-z0-9_.-]{1,64}, interval_ms >= 200; the check
 * gets min(interval/2, 2 s) to answer. 0, or -1 (bad name or interval,
 * a name taken, no room; logged). fn and arg must outlive the server's
 * stopping. */
int plat_check_declare(plat_server *srv, const char *name, int interval_ms,
    plat_check_fn fn, void *arg);

/* The last result of a check (PLAT_CHECK_PASSING before its first run,
 * 0 for an unknown name), with its output copied to out. */
int plat_check_last(plat_server *srv, const char *name, char *out,
    size_t outlen);

/* The database check config-, event- and auth-srv declare: a SELECT 1
 * through the store's pool every --check-interval-ms, critical when it
 * fails (pg.h's store). */
struct pg_store;
int plat_check_declare_database(plat_server *srv, struct pg_store *store);

#endif
