/*
 * server_internal: what server.c shares with the built-in services
 * (health.c, reflection.c). Not part of the public API.
 */
#ifndef PLATFORM_SERVER_INTERNAL_H
#define PLATFORM_SERVER_INTERNAL_H

#include <stddef.h>

#include "platform/server.h"

struct health_state;

/* The built-in services every server mounts beside its own. */
extern const struct plat_method health_methods[];
extern const size_t health_nmethods;
extern const struct plat_method reflection_methods[];
extern const size_t reflection_nmethods;

struct health_state *health_new(void);
void health_free(struct health_state *h);
/* Ends every health Watch stream (at shutdown, after NOT_SERVING). */
void health_close_watchers(struct health_state *h);
struct health_state *server_health(plat_server *srv);

/* The gRPC service names this server answers, for reflection. */
size_t server_grpc_services(plat_server *srv, const char **out, size_t max);

/* The server's own checks (checks.c): made with the server, started
 * once it serves, stopped when its shutdown begins. */
struct plat_checks;
struct plat_checks *checks_new(void);
void checks_free(struct plat_checks *c);
void checks_start(struct plat_checks *c, plat_server *srv);
void checks_stop(struct plat_checks *c);
struct plat_checks *server_checks(plat_server *srv);
/* The registered name: "config". */
const char *server_name(const plat_server *srv);

#define PLAT_HEALTH_SERVICE "grpc.health.v1.Health"
#define PLAT_REFLECTION_V1ALPHA "grpc.reflection.v1alpha.ServerReflection"
#define PLAT_REFLECTION_V1 "grpc.reflection.v1.ServerReflection"

#endif
