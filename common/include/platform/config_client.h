/*
 * config_client: a program's settings, merged from several sources and
 * kept current by config-srv without a restart.
 *
 * plat_config_load builds one JSON object from these sources, applied in
 * order, each deep-merged over the ones before (objects merge key by key;
 * anything else, null and arrays included, replaces what was there):
 *
 *   1. defaults_json   a JSON object in a string
 *   2. file            a JSON file holding an object
 *   3. environment     every variable starting with env_prefix. The rest
 *                      of the name, lowercased, is the key; "__" nests:
 *                      MYAPP_DB__HOST=x gives {"db":{"host":"x"}}. A value
 *                      that parses as JSON is that JSON (8080, true,
 *                      [1,2], {"a":1}); anything else is a string.
 *   4. config-srv      for each path P of paths, the merged Read of P in
 *                      namespace_ (global <- prod <- prod/eu), placed at
 *                      P with '/' making nested objects: the document at
 *                      "payments/limits" lands at {"payments":{"limits":
 *                      <document>}}. A path that does not exist anywhere
 *                      in the chain adds nothing. Paths are plain paths
 *                      (no ".selector"); where two overlap the later wins.
 *
 * Fallback: if config-srv cannot be reached (UNAVAILABLE, a deadline, a
 * failed node), the load still succeeds with the config-srv part taken
 * from the last good fetch: the one before in this process, else the
 * cache_file written after every good fetch, else nothing. It says so
 * with a log_warn, and plat_config_stale() is 1 until config-srv answers
 * again. Only a mistake of the caller's (a bad namespace or path, which
 * config-srv calls INVALID_ARGUMENT) fails the load.
 *
 * Hot reload: plat_config_watch_start starts a thread holding a config-srv
 * Watch on the namespace chain. When a change touches one of the paths it
 * reads them again, rebuilds the merged object and calls every callback
 * given to plat_config_on_change. A broken stream is reopened with backoff
 * from the last revision seen, so no change is missed; by service name,
 * the stream goes to a node that discovery-srv's GetService names (round
 * robin across reconnects), since streams are opened by address.
 *
 * Every function is thread-safe. Selectors are dot-separated keys, with a
 * number indexing an array: "db.host", "servers.0.port"; "" or NULL is the
 * whole object. Keys holding a '.' cannot be selected.
 */
#ifndef PLATFORM_CONFIG_CLIENT_H
#define PLATFORM_CONFIG_CLIENT_H

#include <stddef.h>

#include <jansson.h>

#include "platform/client.h"

typedef struct plat_config plat_config;

struct plat_config_opts {
	/* Local sources; each may be NULL. */
	const char *defaults_json;      /* a JSON object */
	const char *file;               /* path of a JSON file */
	int file_optional;              /* 1: a missing file is skipped */
	const char *env_prefix;         /* "MYAPP_"; NULL: no environment */
	const char *const *envp;        /* "K=V", ..., NULL; NULL: environ */

	/* config-srv, used when client, namespace_ and paths are given. */
	plat_client *client;            /* not owned; outlives the config */
	const char *address;            /* host:port of config-srv, or */
	const char *service;            /* its name in discovery; NULL:
	                                 * "config" (needs a client made
	                                 * with a discovery address) */
	const char *namespace_;         /* "prod/eu" */
	const char *const *paths;       /* "payments/limits", ..., NULL */
	const char *cache_file;         /* last good config-srv part; NULL:
	                                 * kept in memory only */
	int deadline_ms;                /* of each call; 0 means 3000 */
};

/* Called from the watch thread after a change, with the new values in
 * place (read them with plat_config_get). It may call any plat_config_*
 * function but plat_config_free. */
typedef void (*plat_config_change_fn)(plat_config *cfg, void *arg);

/* Copies opts (strings and arrays); loads nothing yet. */
plat_config *plat_config_new(const struct plat_config_opts *opts);

/* Reads every source and publishes the merged object: 0, or -1 with one
 * line in err: options naming config-srv half-way (a namespace without
 * paths, say), a bad defaults string, a file that is missing or not a
 * JSON object (with its line and column), or config-srv refusing the
 * request (INVALID_ARGUMENT, PERMISSION_DENIED, ...: a mistake to fix,
 * not an outage to ride out). On -1 the values loaded before stay. May be
 * called again to reload, also while the watch runs. */
int plat_config_load(plat_config *cfg, char *err, size_t errlen);

/* A new reference to a deep copy of the value at selector (the caller
 * json_decref's it), or NULL when there is none. */
json_t *plat_config_get(plat_config *cfg, const char *selector);

/* The string at selector as a new string (the caller frees it), or a
 * copy of def (NULL when def is NULL) when it is absent or not a string. */
char *plat_config_get_string(plat_config *cfg, const char *selector,
    const char *def);

/* The integer at selector, or def when absent or not an integer. */
long long plat_config_get_int(plat_config *cfg, const char *selector,
    long long def);

/* The boolean at selector (1 or 0), or def when absent or not a bool. */
int plat_config_get_bool(plat_config *cfg, const char *selector, int def);

/* 1 while the config-srv part is the last known good one rather than
 * config-srv's current answer; 0 when current or not configured. */
int plat_config_stale(plat_config *cfg);

/* The highest config-srv revision seen (at load or by the watch); 0
 * before any. */
long long plat_config_revision(plat_config *cfg);

/* Adds a callback for changes seen by the watch: 0, or -1 when full
 * (PLAT_CONFIG_MAX_CALLBACKS). */
#define PLAT_CONFIG_MAX_CALLBACKS 16
int plat_config_on_change(plat_config *cfg, plat_config_change_fn fn,
    void *arg);

/* Starts the watch thread (once; later calls do nothing): 0, or -1 when
 * config-srv is not configured or the thread cannot start. */
int plat_config_watch_start(plat_config *cfg);

/* Stops the watch (if any) and frees everything. NULL is a no-op. */
void plat_config_free(plat_config *cfg);

#endif
