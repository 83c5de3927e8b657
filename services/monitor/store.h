/*
 * store: what monitor-srv keeps in PostgreSQL, so a restart (or another
 * replica) carries on where it was instead of resetting every check to
 * critical (Consul's TTL checks do, and that pages people):
 *
 * monitor_checks    the last result of every pushed check: status (raw
 *                   and damped), output, TTL and when it expires (Unix
 *                   ms). A check whose time is up on reload is critical;
 *                   one with time left keeps its status.
 * monitor_nodes     each node's damped status and since when, so a
 *                   restart emits no status change that did not happen.
 * monitor_settings  per-service probe interval and timeout.
 *
 * Small tables, written once per report or change: no batching needed
 * at a fleet's report rate (a few per node per interval).
 */
#ifndef MONITOR_STORE_H
#define MONITOR_STORE_H

#include <stdint.h>

#include "platform/pg.h"

struct pg_store *store_new(const char *conninfo, int pool_size);

struct store_check {
	const char *node_id, *service, *name, *output;
	int status, damped;
	int64_t ttl_ms, reported_ms, expires_ms;
};
struct store_node {
	const char *node_id, *service;
	int status;
	int64_t since_ms;
};
struct store_settings {
	const char *service;
	int64_t interval_ms, timeout_ms;
};

enum plat_code store_put_check(struct pg_store *s,
    const struct store_check *c, int64_t timeout_ms, char *err,
    size_t errlen);
enum plat_code store_put_node(struct pg_store *s, const struct store_node *n,
    int64_t timeout_ms, char *err, size_t errlen);
/* The node's row and its checks. */
enum plat_code store_delete_node(struct pg_store *s, const char *node_id,
    int64_t timeout_ms, char *err, size_t errlen);
enum plat_code store_put_settings(struct pg_store *s,
    const struct store_settings *st, int64_t timeout_ms, char *err,
    size_t errlen);

/* Everything, to callbacks (strings valid during the call). */
struct store_loader {
	void (*check)(void *arg, const struct store_check *c);
	void (*node)(void *arg, const struct store_node *n);
	void (*settings)(void *arg, const struct store_settings *st);
	void *arg;
};
enum plat_code store_load(struct pg_store *s, const struct store_loader *l,
    int64_t timeout_ms, char *err, size_t errlen);
/* The same for one node (a replica taking it over). */
enum plat_code store_load_node(struct pg_store *s, const char *node_id,
    const struct store_loader *l, int64_t timeout_ms, char *err,
    size_t errlen);

#endif
