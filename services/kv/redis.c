/*
 * redis: kv-srv in front of Redis (--backend redis://HOST:PORT).
 */
#include "backend.h"
#include "platform/log.h"

struct kv_backend *
kv_redis_new(plat_server *srv, const struct kv_settings *set)
{
	(void)srv;
	log_error("kv: the redis backend is not built in", "backend",
	    set->backend);
	return NULL;
}
