/*
 * registrar: keeps a server registered with discovery-srv.
 *
 * At start it registers (name, version, node id, address, metadata,
 * endpoints) and then repeats the Register every ttl/3 seconds: each
 * heartbeat is a full registration, so a discovery-srv that restarted and
 * forgot the node learns it again at the next beat. Failures are logged
 * once per change of state and retried with backoff. Stop deregisters.
 */
#ifndef PLATFORM_REGISTRAR_H
#define PLATFORM_REGISTRAR_H

#include "platform/client.h"

struct plat_registration {
	const char *service;             /* "discovery" */
	const char *version;             /* "0.1.0" */
	const char *node_id;
	const char *address;             /* advertised host:port */
	const char *const *metadata;     /* key, value, ..., NULL; may be NULL */
	const char *const *endpoints;    /* method names, NULL-terminated */
	int ttl_s;
};

typedef struct plat_registrar plat_registrar;

/* Copies reg; the first Register is attempted before it returns (failure
 * is logged, not fatal: the heartbeat keeps trying). */
plat_registrar *plat_registrar_start(plat_client *c, const char *discovery,
    const struct plat_registration *reg);

/* Stops the heartbeat and deregisters the node (bounded by a short
 * deadline). NULL is a no-op. */
void plat_registrar_stop(plat_registrar *r);

/* 1 once a Register has succeeded since the last failure. */
int plat_registrar_registered(plat_registrar *r);

#endif
