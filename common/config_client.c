/*
 * config_client: settings merged from defaults, a file, the environment
 * and config-srv, reloaded by a Watch. See platform/config_client.h.
 *
 * State: `local` (defaults <- file <- env), `remote` (the config-srv part,
 * last good) and `merged` (local <- remote, what the getters read). All
 * three are private trees that are replaced whole, never edited once
 * published; mu guards the pointers, and the getters copy out under it.
 * Publishers (load and the watch's refresh) also hold fetch_mu, so two
 * fetches never publish out of order and a publisher may read `local` and
 * `remote` without mu: nobody else writes them.
 *
 * The watch thread: open Watch(chain of namespace_, prefix "", after the
 * highest revision seen), note the revision of every message, and re-read
 * the paths when a change touches one of them (changes arriving together
 * are read once), and always once the stream reports caught_up: the reads
 * at load and the stream's start are not one snapshot, so this closes any
 * gap between them. A broken stream is reopened with backoff.
 *
 * Cache file format (written atomically after every good fetch):
 *   {"namespace": "prod/eu", "paths": ["payments/limits", ...],
 *    "revision": 42, "saved_unix_ms": ..., "values": {...config-srv part}}
 * It is used only for the same namespace and paths.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "platform/client.h"
#include "platform/clock.h"
#include "platform/config/v1/config.pb-c.h"
#include "platform/config_client.h"
#include "platform/discovery/v1/discovery.pb-c.h"
#include "platform/errbuf.h"
#include "platform/log.h"
#include "platform/xalloc.h"

#define CONFIG_SERVICE		"config"
#define CONFIG_DISCOVERY	"discovery"	/* registers with itself */
#define CONFIG_DEADLINE_MS	3000
#define WATCH_POLL_MS		1000	/* how soon the thread sees a stop */
#define WATCH_COALESCE_MS	50	/* changes this close: one re-read */
#define WATCH_COALESCE_MAX_MS	500	/* ... but never put off longer */
#define WATCH_BACKOFF_MIN_MS	200
#define WATCH_BACKOFF_MAX_MS	5000
#define ERRLEN			512

#define M_READ		"/platform.config.v1.Config/Read"
#define M_WATCH		"/platform.config.v1.Config/Watch"
#define M_GET_SERVICE	"/platform.discovery.v1.Discovery/GetService"

/* gRPC status codes this module tells apart (grpc/status.h is kept
 * inside the runtime). */
enum {
	ST_OK = 0,
	ST_INVALID_ARGUMENT = 3,
	ST_NOT_FOUND = 5,
	ST_PERMISSION_DENIED = 7,
	ST_FAILED_PRECONDITION = 9,
	ST_OUT_OF_RANGE = 11,
	ST_UNIMPLEMENTED = 12,
	ST_INTERNAL = 13,
	ST_UNAUTHENTICATED = 16,
};

typedef Platform__Config__V1__Value pb_value;
typedef Platform__Config__V1__ReadResponse pb_read_resp;
typedef Platform__Config__V1__WatchResponse pb_watch_resp;

struct config_cb {
	plat_config_change_fn fn;
	void *arg;
};

struct plat_config {
	/* Options, copied; fixed after new. */
	char *defaults_json;
	char *file;
	int file_optional;
	char *env_prefix;
	char **envp;			/* NULL: environ at load time */
	plat_client *client;
	char *address;			/* NULL: by service name */
	char *service;
	char *ns;			/* NULL: no config-srv */
	char **paths;
	size_t npaths;
	char **chain;			/* "global", "prod", "prod/eu" */
	size_t nchain;
	char *cache_file;
	int deadline_ms;

	pthread_mutex_t fetch_mu;	/* one publisher at a time */
	pthread_mutex_t mu;		/* everything below */
	json_t *local;
	json_t *remote;			/* NULL: none yet */
	json_t *merged;
	int stale;
	long long revision;
	struct config_cb cbs[PLAT_CONFIG_MAX_CALLBACKS];
	size_t ncbs;

	/* The watch thread. */
	pthread_cond_t cv;		/* wakes its backoff sleep */
	pthread_t thr;
	int watch_started;
	int stopping;
	plat_client_stream *stream;	/* open stream, for free to cancel */
	size_t node_next;		/* round robin over resolved nodes */
};

/* ---- small helpers ---- */

static char **
strv_dup(const char *const *v, size_t *n)
{
	size_t count = 0;
	char **d;

	while (v != NULL && v[count] != NULL)
		count++;
	d = xcalloc(count + 1, sizeof(*d));
	for (size_t i = 0; i < count; i++)
		d[i] = xstrdup(v[i]);
	if (n != NULL)
		*n = count;
	return d;
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static char *
opt_dup(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

/* The length of path without a ".selector" tail. */
static size_t
path_base_len(const char *path)
{
	return strcspn(path, ".");
}

/* The namespace chain of ns: "global", then each "/"-prefix, then ns. */
static char **
ns_chain(const char *ns, size_t *n)
{
	char **c = xcalloc(strlen(ns) + 3, sizeof(*c));
	size_t k = 0;

	c[k++] = xstrdup("global");
	for (const char *p = ns; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char *pre = strndup(ns, (size_t)(p - ns));

		if (pre == NULL)
			abort();
		if (*pre != '\0' && strcmp(pre, c[k - 1]) != 0)
			c[k++] = pre;
		else
			free(pre);
		if (*p == '\0')
			break;
	}
	*n = k;
	return c;
}

/* ---- JSON ---- */

/* Deep-merges src into the object dst: objects merge key by key, any
 * other value replaces (a copy of) what dst held. */
static void
json_merge(json_t *dst, const json_t *src)
{
	const char *key;
	json_t *s, *d;

	json_object_foreach((json_t *)src, key, s) {
		d = json_object_get(dst, key);
		if (json_is_object(d) && json_is_object(s))
			json_merge(d, s);
		else
			json_object_set_new(dst, key, json_deep_copy(s));
	}
}

/* {"a":{"b":doc}} for key path "a/b" (sep '/'), stealing doc. Empty
 * segments are skipped, so "a//b" is "a/b". */
static json_t *
json_place(const char *keypath, const char *sep, json_t *doc)
{
	json_t *root = json_object(), *cur = root, *next;
	char *copy = xstrdup(keypath), *save = NULL, *seg, *last = NULL;

	for (seg = strtok_r(copy, sep, &save); seg != NULL;
	    seg = strtok_r(NULL, sep, &save)) {
		if (last != NULL) {
			next = json_object();
			json_object_set_new(cur, last, next);
			cur = next;
		}
		last = seg;
	}
	if (last != NULL)
		json_object_set_new(cur, last, doc);
	else
		json_decref(doc);
	free(copy);
	return root;
}

/* Merges src (stolen) into dst. */
static void
json_merge_new(json_t *dst, json_t *src)
{
	json_merge(dst, src);
	json_decref(src);
}

/* The node at a dot selector inside root (borrowed), or NULL. */
static json_t *
json_select(json_t *root, const char *sel)
{
	char *copy, *save = NULL, *seg, *end;
	json_t *cur = root;
	unsigned long idx;

	if (sel == NULL || *sel == '\0' || root == NULL)
		return root;
	copy = xstrdup(sel);
	for (seg = strtok_r(copy, ".", &save); seg != NULL && cur != NULL;
	    seg = strtok_r(NULL, ".", &save)) {
		if (json_is_object(cur))
			cur = json_object_get(cur, seg);
		else if (json_is_array(cur) && isdigit((unsigned char)*seg)) {
			errno = 0;
			idx = strtoul(seg, &end, 10);
			cur = (errno == 0 && *end == '\0') ?
			    json_array_get(cur, idx) : NULL;
		} else
			cur = NULL;
	}
	free(copy);
	return cur;
}

/* ---- local sources ---- */

static int
load_defaults(plat_config *cfg, json_t *into, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j;

	if (cfg->defaults_json == NULL)
		return 0;
	if ((j = json_loads(cfg->defaults_json, 0, &je)) == NULL) {
		errbuf_set(err, errlen, "config defaults: %s (line %d, column "
		    "%d)", je.text, je.line, je.column);
		return -1;
	}
	if (!json_is_object(j)) {
		errbuf_set(err, errlen, "config defaults: not a JSON object");
		json_decref(j);
		return -1;
	}
	json_merge_new(into, j);
	return 0;
}

static int
load_file(plat_config *cfg, json_t *into, char *err, size_t errlen)
{
	struct stat st;
	json_error_t je;
	json_t *j;

	if (cfg->file == NULL)
		return 0;
	if (cfg->file_optional && stat(cfg->file, &st) != 0 &&
	    errno == ENOENT)
		return 0;
	if ((j = json_load_file(cfg->file, 0, &je)) == NULL) {
		if (je.line > 0)
			errbuf_set(err, errlen, "config file %s: line %d, "
			    "column %d: %s", cfg->file, je.line, je.column,
			    je.text);
		else
			errbuf_set(err, errlen, "config file %s: %s",
			    cfg->file, je.text);
		return -1;
	}
	if (!json_is_object(j)) {
		errbuf_set(err, errlen, "config file %s: not a JSON object",
		    cfg->file);
		json_decref(j);
		return -1;
	}
	json_merge_new(into, j);
	return 0;
}

/* "DB__HOST" -> "db/host" (the key path json_place takes); NULL when a
 * segment is empty ("", "A__", "__A", "A____B"). */
static char *
env_keypath(const char *name, size_t len)
{
	char *kp = xcalloc(1, len + 1);
	size_t k = 0;

	for (size_t i = 0; i < len; i++) {
		if (name[i] == '_' && i + 1 < len && name[i + 1] == '_') {
			if (k == 0 || kp[k - 1] == '/')
				goto bad;
			kp[k++] = '/';
			i++;
		} else
			kp[k++] = (char)tolower((unsigned char)name[i]);
	}
	if (k == 0 || kp[k - 1] == '/')
		goto bad;
	return kp;
bad:
	free(kp);
	return NULL;
}

/* The value as JSON when it parses, else as a string; NULL when it is
 * neither (bytes that are not UTF-8). */
static json_t *
env_value(const char *v)
{
	json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);

	return j != NULL ? j : json_string(v);
}

static int
env_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One "PREFIX_KEY=value" entry into `into`; bad ones are logged and
 * skipped: the environment is not the program's to fix. */
static void
load_env_one(json_t *into, const char *entry, size_t plen)
{
	const char *eq = strchr(entry, '=');
	char *kp, *name;
	json_t *v;

	if (eq == NULL)
		return;
	name = strndup(entry, (size_t)(eq - entry));
	if (name == NULL)
		abort();
	if ((kp = env_keypath(entry + plen, (size_t)(eq - entry) - plen)) ==
	    NULL)
		log_warn("config: environment variable skipped: empty key "
		    "segment", "name", name);
	else if ((v = env_value(eq + 1)) == NULL)
		log_warn("config: environment variable skipped: value is not "
		    "UTF-8", "name", name);
	else
		json_merge_new(into, json_place(kp, "/", v));
	free(kp);
	free(name);
}

/* Applied in name order, so the result does not depend on the order of
 * the environment: MYAPP_DB=1 then MYAPP_DB__HOST=x gives db an object. */
static void
load_env(plat_config *cfg, json_t *into)
{
	char **env = cfg->envp != NULL ? cfg->envp : environ;
	size_t plen, n = 0, cap = 16;
	const char **match;

	if (cfg->env_prefix == NULL || env == NULL)
		return;
	plen = strlen(cfg->env_prefix);
	match = xcalloc(cap, sizeof(*match));
	for (size_t i = 0; env[i] != NULL; i++) {
		if (strncmp(env[i], cfg->env_prefix, plen) != 0)
			continue;
		if (n == cap) {
			cap *= 2;
			if ((match = realloc(match, cap * sizeof(*match))) ==
			    NULL)
				abort();
		}
		match[n++] = env[i];
	}
	qsort(match, n, sizeof(*match), env_cmp);
	for (size_t i = 0; i < n; i++)
		load_env_one(into, match[i], plen);
	free(match);
}

/* defaults <- file <- environment, as a new object; NULL on error. */
static json_t *
load_local(plat_config *cfg, char *err, size_t errlen)
{
	json_t *local = json_object();

	if (load_defaults(cfg, local, err, errlen) != 0 ||
	    load_file(cfg, local, err, errlen) != 0) {
		json_decref(local);
		return NULL;
	}
	load_env(cfg, local);
	return local;
}

/* ---- config-srv ---- */

/* A code that means the request is wrong, not that config-srv is away:
 * retrying or riding it out on cached values would hide the mistake. */
static int
status_is_mistake(int rc)
{
	return rc == ST_INVALID_ARGUMENT || rc == ST_FAILED_PRECONDITION ||
	    rc == ST_PERMISSION_DENIED || rc == ST_UNAUTHENTICATED ||
	    rc == ST_UNIMPLEMENTED || rc == ST_OUT_OF_RANGE;
}

/* One unary call to config-srv, by address or by name. */
static int
remote_call(plat_config *cfg, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, char *err, size_t errlen)
{
	struct plat_call_opts co = {
		.deadline_ms = cfg->deadline_ms,
		.idempotent = 1,
	};

	if (cfg->address != NULL)
		return plat_client_call_addr(cfg->client, cfg->address,
		    method, req, desc, resp, &co, err, errlen);
	return plat_client_call(cfg->client, cfg->service, method, req, desc,
	    resp, &co, err, errlen);
}

/* The merged document at path into *doc (NULL when the path exists
 * nowhere in the chain or is deleted) and its revision into *rev. */
static int
remote_read(plat_config *cfg, const char *path, json_t **doc,
    long long *rev, char *err, size_t errlen)
{
	Platform__Config__V1__ReadRequest req =
	    PLATFORM__CONFIG__V1__READ_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	const pb_value *v;
	json_error_t je;
	char e[ERRLEN] = "";
	int rc;

	*doc = NULL;
	*rev = 0;
	req.namespace_ = cfg->ns;
	req.path = (char *)path;
	req.merged = 1;
	rc = remote_call(cfg, M_READ, &req.base,
	    &platform__config__v1__read_response__descriptor, &m, e,
	    sizeof(e));
	if (rc == ST_NOT_FOUND)
		return ST_OK;
	if (rc != ST_OK) {
		errbuf_set(err, errlen, "Read %s %s: %s: %s", cfg->ns, path,
		    plat_status_name(rc), e);
		return rc;
	}
	v = ((pb_read_resp *)m)->value;
	if (v != NULL && !v->deleted && v->json[0] != '\0' &&
	    (*doc = json_loads(v->json, JSON_DECODE_ANY, &je)) == NULL) {
		errbuf_set(err, errlen, "Read %s %s: config-srv sent bad JSON: "
		    "%s", cfg->ns, path, je.text);
		rc = ST_INTERNAL;
	}
	if (v != NULL)
		*rev = v->revision;
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* Every path, each placed at its key path, as one new object; all or
 * nothing. *rev gets the highest revision read. */
static int
remote_fetch(plat_config *cfg, json_t **out, long long *rev, char *err,
    size_t errlen)
{
	json_t *all = json_object(), *doc;
	long long r;
	int rc;

	*out = NULL;
	*rev = 0;
	for (size_t i = 0; i < cfg->npaths; i++) {
		rc = remote_read(cfg, cfg->paths[i], &doc, &r, err, errlen);
		if (rc != ST_OK) {
			json_decref(all);
			return rc;
		}
		if (r > *rev)
			*rev = r;
		if (doc != NULL)
			json_merge_new(all, json_place(cfg->paths[i], "/",
			    doc));
	}
	*out = all;
	return ST_OK;
}

/* ---- the cache file ---- */

static json_t *
cache_doc(plat_config *cfg, const json_t *remote, long long rev)
{
	json_t *paths = json_array();

	for (size_t i = 0; i < cfg->npaths; i++)
		json_array_append_new(paths, json_string(cfg->paths[i]));
	return json_pack("{s:s, s:o, s:I, s:I, s:O}", "namespace", cfg->ns,
	    "paths", paths, "revision", (json_int_t)rev,
	    "saved_unix_ms", (json_int_t)plat_wall_ms(),
	    "values", remote);
}

/* Writes the config-srv part to the cache file: a temporary file renamed
 * over it, so a reader never sees half a file. Failures are logged. */
static void
cache_save(plat_config *cfg, const json_t *remote, long long rev)
{
	char *tmp = NULL;
	json_t *doc;
	int fd, ok;

	if (cfg->cache_file == NULL)
		return;
	if (asprintf(&tmp, "%s.%ld.tmp", cfg->cache_file, (long)getpid()) < 0)
		abort();
	doc = cache_doc(cfg, remote, rev);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ok = fd >= 0 && doc != NULL &&
	    json_dumpfd(doc, fd, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 &&
	    write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	if (fd >= 0 && close(fd) != 0)
		ok = 0;
	if (ok && rename(tmp, cfg->cache_file) != 0)
		ok = 0;
	if (!ok) {
		log_warn("config: cannot write the cache file", "path",
		    cfg->cache_file, "error", strerror(errno));
		if (fd >= 0)
			unlink(tmp);
	}
	json_decref(doc);
	free(tmp);
}

static int
cache_paths_match(plat_config *cfg, const json_t *paths)
{
	if (!json_is_array(paths) || json_array_size(paths) != cfg->npaths)
		return 0;
	for (size_t i = 0; i < cfg->npaths; i++) {
		const char *p = json_string_value(json_array_get(paths, i));

		if (p == NULL || strcmp(p, cfg->paths[i]) != 0)
			return 0;
	}
	return 1;
}

/* The config-srv part saved in the cache file (a new reference), or NULL
 * when there is none usable; says why when there is one but it does not
 * fit. */
static json_t *
cache_load(plat_config *cfg, long long *rev)
{
	json_error_t je;
	json_t *doc, *values = NULL;
	const char *why = NULL;

	*rev = 0;
	if (cfg->cache_file == NULL)
		return NULL;
	if ((doc = json_load_file(cfg->cache_file, 0, &je)) == NULL) {
		if (access(cfg->cache_file, F_OK) == 0)
			log_warn("config: cannot read the cache file", "path",
			    cfg->cache_file, "error", je.text);
		return NULL;
	}
	if (!json_is_string(json_object_get(doc, "namespace")) ||
	    strcmp(json_string_value(json_object_get(doc, "namespace")),
	    cfg->ns) != 0)
		why = "it holds another namespace";
	else if (!cache_paths_match(cfg, json_object_get(doc, "paths")))
		why = "it holds other paths";
	else if (!json_is_object(json_object_get(doc, "values")))
		why = "it has no values object";
	if (why != NULL)
		log_warn("config: cache file not used", "path",
		    cfg->cache_file, "reason", why);
	else {
		values = json_incref(json_object_get(doc, "values"));
		*rev = json_integer_value(json_object_get(doc, "revision"));
	}
	json_decref(doc);
	return values;
}

/* ---- publishing ---- */

/*
 * Makes local <- remote the values the getters see. Steals local and
 * remote; NULL keeps the current one. The caller holds fetch_mu. Returns 1
 * when the merged values changed.
 */
static int
config_publish(plat_config *cfg, json_t *local, json_t *remote, int stale,
    long long rev)
{
	json_t *l = local != NULL ? local : cfg->local;
	json_t *r = remote != NULL ? remote : cfg->remote;
	json_t *merged = l != NULL ? json_deep_copy(l) : json_object();
	json_t *old_merged, *old_local = NULL, *old_remote = NULL;
	int changed;

	if (r != NULL)
		json_merge(merged, r);
	pthread_mutex_lock(&cfg->mu);
	old_merged = cfg->merged;
	changed = old_merged == NULL || !json_equal(old_merged, merged);
	cfg->merged = merged;
	if (local != NULL) {
		old_local = cfg->local;
		cfg->local = local;
	}
	if (remote != NULL) {
		old_remote = cfg->remote;
		cfg->remote = remote;
	}
	cfg->stale = stale;
	if (rev > cfg->revision)
		cfg->revision = rev;
	pthread_mutex_unlock(&cfg->mu);
	json_decref(old_merged);
	json_decref(old_local);
	json_decref(old_remote);
	return changed;
}

/* The config-srv part after a failed fetch: the one already in memory
 * (NULL: keep it), else the cache file's. Logs the fallback. */
static json_t *
remote_fallback(plat_config *cfg, int rc, const char *why,
    long long *rev)
{
	json_t *r = NULL;
	const char *from = "memory";

	*rev = 0;
	if (cfg->remote == NULL) {
		r = cache_load(cfg, rev);
		from = r != NULL ? "cache file" : "none";
	}
	log_warn("config: config-srv unreachable; using the last known good "
	    "values", "namespace", cfg->ns, "status", plat_status_name(rc),
	    "error", why, "from", from);
	return r;
}

/* ---- the API ---- */

plat_config *
plat_config_new(const struct plat_config_opts *o)
{
	struct plat_config_opts none = { 0 };
	plat_config *cfg = xcalloc(1, sizeof(*cfg));

	if (o == NULL)
		o = &none;
	cfg->defaults_json = opt_dup(o->defaults_json);
	cfg->file = opt_dup(o->file);
	cfg->file_optional = o->file_optional;
	cfg->env_prefix = opt_dup(o->env_prefix);
	cfg->envp = o->envp != NULL ? strv_dup(o->envp, NULL) : NULL;
	cfg->client = o->client;
	cfg->address = o->address != NULL && *o->address != '\0' ?
	    xstrdup(o->address) : NULL;
	cfg->service = xstrdup(o->service != NULL ? o->service :
	    CONFIG_SERVICE);
	cfg->ns = opt_dup(o->namespace_);
	cfg->paths = strv_dup(o->paths, &cfg->npaths);
	if (cfg->ns != NULL)
		cfg->chain = ns_chain(cfg->ns, &cfg->nchain);
	cfg->cache_file = opt_dup(o->cache_file);
	cfg->deadline_ms = o->deadline_ms > 0 ? o->deadline_ms :
	    CONFIG_DEADLINE_MS;
	pthread_mutex_init(&cfg->fetch_mu, NULL);
	pthread_mutex_init(&cfg->mu, NULL);
	plat_cond_init(&cfg->cv);
	return cfg;
}

/* 1 when config-srv is a source. */
static int
config_remote(const plat_config *cfg)
{
	return cfg->ns != NULL && cfg->npaths > 0 && cfg->client != NULL;
}

/* config-srv named half-way is a mistake, not "no config-srv". */
static int
config_check(const plat_config *cfg, char *err, size_t errlen)
{
	if ((cfg->ns != NULL || cfg->npaths > 0) && !config_remote(cfg)) {
		errbuf_set(err, errlen, "config: config-srv needs a client, a "
		    "namespace and at least one path (%s missing)",
		    cfg->client == NULL ? "client" : cfg->ns == NULL ?
		    "namespace" : "paths");
		return -1;
	}
	if (cfg->ns != NULL && *cfg->ns == '\0') {
		errbuf_set(err, errlen, "config: empty namespace");
		return -1;
	}
	for (size_t i = 0; i < cfg->npaths; i++)
		if (*cfg->paths[i] == '\0') {
			errbuf_set(err, errlen, "config: paths[%zu] is empty",
			    i);
			return -1;
		}
	return 0;
}

/* The config-srv part for a load into *remote (NULL: keep the current),
 * with *stale and *rev; -1 only for a mistake in the request. */
static int
load_remote(plat_config *cfg, json_t **remote, int *stale, long long *rev,
    char *err, size_t errlen)
{
	char why[ERRLEN] = "";
	int rc;

	*remote = NULL;
	*stale = 0;
	*rev = 0;
	if (!config_remote(cfg))
		return 0;
	rc = remote_fetch(cfg, remote, rev, why, sizeof(why));
	if (rc == ST_OK) {
		cache_save(cfg, *remote, *rev);
		return 0;
	}
	if (status_is_mistake(rc)) {
		errbuf_set(err, errlen, "config: %s", why);
		return -1;
	}
	*stale = 1;
	*remote = remote_fallback(cfg, rc, why, rev);
	return 0;
}

int
plat_config_load(plat_config *cfg, char *err, size_t errlen)
{
	json_t *local, *remote;
	long long rev;
	int stale, rc = -1;

	if (config_check(cfg, err, errlen) != 0)
		return -1;
	pthread_mutex_lock(&cfg->fetch_mu);
	if ((local = load_local(cfg, err, errlen)) == NULL)
		goto out;
	if (load_remote(cfg, &remote, &stale, &rev, err, errlen) != 0) {
		json_decref(local);
		goto out;
	}
	config_publish(cfg, local, remote, stale, rev);
	rc = 0;
out:
	pthread_mutex_unlock(&cfg->fetch_mu);
	return rc;
}

json_t *
plat_config_get(plat_config *cfg, const char *selector)
{
	json_t *v;

	pthread_mutex_lock(&cfg->mu);
	v = json_select(cfg->merged, selector);
	v = v != NULL ? json_deep_copy(v) : NULL;
	pthread_mutex_unlock(&cfg->mu);
	return v;
}

char *
plat_config_get_string(plat_config *cfg, const char *selector,
    const char *def)
{
	const char *s;
	char *r;

	pthread_mutex_lock(&cfg->mu);
	s = json_string_value(json_select(cfg->merged, selector));
	r = s != NULL ? xstrdup(s) : opt_dup(def);
	pthread_mutex_unlock(&cfg->mu);
	return r;
}

long long
plat_config_get_int(plat_config *cfg, const char *selector, long long def)
{
	json_t *v;
	long long r = def;

	pthread_mutex_lock(&cfg->mu);
	if (json_is_integer(v = json_select(cfg->merged, selector)))
		r = json_integer_value(v);
	pthread_mutex_unlock(&cfg->mu);
	return r;
}

int
plat_config_get_bool(plat_config *cfg, const char *selector, int def)
{
	json_t *v;
	int r = def;

	pthread_mutex_lock(&cfg->mu);
	if (json_is_boolean(v = json_select(cfg->merged, selector)))
		r = json_is_true(v);
	pthread_mutex_unlock(&cfg->mu);
	return r;
}

int
plat_config_stale(plat_config *cfg)
{
	int s;

	pthread_mutex_lock(&cfg->mu);
	s = cfg->stale;
	pthread_mutex_unlock(&cfg->mu);
	return s;
}

long long
plat_config_revision(plat_config *cfg)
{
	long long r;

	pthread_mutex_lock(&cfg->mu);
	r = cfg->revision;
	pthread_mutex_unlock(&cfg->mu);
	return r;
}

int
plat_config_on_change(plat_config *cfg, plat_config_change_fn fn,
    void *arg)
{
	int rc = -1;

	pthread_mutex_lock(&cfg->mu);
	if (fn != NULL && cfg->ncbs < PLAT_CONFIG_MAX_CALLBACKS) {
		cfg->cbs[cfg->ncbs].fn = fn;
		cfg->cbs[cfg->ncbs].arg = arg;
		cfg->ncbs++;
		rc = 0;
	}
	pthread_mutex_unlock(&cfg->mu);
	return rc;
}

/* ---- the watch ---- */

static int
watch_stopping(plat_config *cfg)
{
	int s;

	pthread_mutex_lock(&cfg->mu);
	s = cfg->stopping;
	pthread_mutex_unlock(&cfg->mu);
	return s;
}

/* Calls every callback, outside the lock so they may read the values. */
static void
watch_notify(plat_config *cfg)
{
	struct config_cb cbs[PLAT_CONFIG_MAX_CALLBACKS];
	size_t n;

	pthread_mutex_lock(&cfg->mu);
	n = cfg->ncbs;
	memcpy(cbs, cfg->cbs, n * sizeof(cbs[0]));
	pthread_mutex_unlock(&cfg->mu);
	for (size_t i = 0; i < n; i++)
		cbs[i].fn(cfg, cbs[i].arg);
}

/* Re-reads the paths and publishes them; on failure the values stay and
 * are marked stale. Returns the gRPC status of the fetch. */
static int
watch_refresh(plat_config *cfg)
{
	char why[ERRLEN] = "";
	json_t *remote;
	long long rev;
	int rc, changed, was_stale;

	pthread_mutex_lock(&cfg->fetch_mu);
	was_stale = plat_config_stale(cfg);
	if ((rc = remote_fetch(cfg, &remote, &rev, why, sizeof(why))) !=
	    ST_OK) {
		pthread_mutex_lock(&cfg->mu);
		cfg->stale = 1;
		pthread_mutex_unlock(&cfg->mu);
		pthread_mutex_unlock(&cfg->fetch_mu);
		log_warn("config: cannot re-read config-srv; keeping the last "
		    "known good values", "namespace", cfg->ns, "status",
		    plat_status_name(rc), "error", why);
		return rc;
	}
	/* Every change the watch saw was seen before this fetch began. */
	if (plat_config_revision(cfg) > rev)
		rev = plat_config_revision(cfg);
	if (cfg->remote == NULL || !json_equal(cfg->remote, remote))
		cache_save(cfg, remote, rev);
	changed = config_publish(cfg, NULL, remote, 0, rev);
	pthread_mutex_unlock(&cfg->fetch_mu);
	if (was_stale)
		log_info("config: config-srv values current again",
		    "namespace", cfg->ns);
	if (changed)
		watch_notify(cfg);
	return ST_OK;
}

/* 1 when the change v touches one of our paths in our chain. */
static int
watch_relevant(const plat_config *cfg, const pb_value *v)
{
	size_t n;
	int in_chain = 0;

	for (size_t i = 0; i < cfg->nchain && !in_chain; i++)
		in_chain = strcmp(v->namespace_, cfg->chain[i]) == 0;
	if (!in_chain)
		return 0;
	for (size_t i = 0; i < cfg->npaths; i++) {
		n = path_base_len(cfg->paths[i]);
		if (strlen(v->path) == n &&
		    strncmp(v->path, cfg->paths[i], n) == 0)
			return 1;
	}
	return 0;
}

/* The address of a config-srv node: the configured one, else the next
 * node (round robin) of the service, asked of discovery-srv. Discovery
 * registers itself, so a client made with a discovery address can call
 * it by name like any other service. */
static int
watch_address(plat_config *cfg, char **addr, char *err, size_t errlen)
{
	Platform__Discovery__V1__GetServiceRequest req =
	    PLATFORM__DISCOVERY__V1__GET_SERVICE_REQUEST__INIT;
	Platform__Discovery__V1__GetServiceResponse *r;
	struct plat_call_opts co = { .deadline_ms = cfg->deadline_ms,
	    .idempotent = 1 };
	ProtobufCMessage *m = NULL;
	const char *pick = NULL;
	size_t n = 0, k;
	int rc;

	*addr = NULL;
	if (cfg->address != NULL) {
		*addr = xstrdup(cfg->address);
		return ST_OK;
	}
	req.name = cfg->service;
	rc = plat_client_call(cfg->client, CONFIG_DISCOVERY, M_GET_SERVICE,
	    &req.base, &platform__discovery__v1__get_service_response__descriptor,
	    &m, &co, err, errlen);
	if (rc != ST_OK)
		return rc;
	r = (Platform__Discovery__V1__GetServiceResponse *)m;
	for (size_t i = 0; i < r->n_services; i++)
		n += r->services[i]->n_nodes;
	k = n > 0 ? cfg->node_next++ % n : 0;
	for (size_t i = 0; i < r->n_services && pick == NULL; i++) {
		if (k < r->services[i]->n_nodes)
			pick = r->services[i]->nodes[k]->address;
		else
			k -= r->services[i]->n_nodes;
	}
	if (pick != NULL && *pick != '\0')
		*addr = xstrdup(pick);
	else {
		errbuf_set(err, errlen, "service \"%s\" has no live node",
		    cfg->service);
		rc = ST_NOT_FOUND;
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* Opens the Watch after the highest revision seen; the stream is also
 * left in cfg->stream so free can cancel it. */
static int
watch_open(plat_config *cfg, plat_client_stream **s, char *err,
    size_t errlen)
{
	Platform__Config__V1__WatchRequest req =
	    PLATFORM__CONFIG__V1__WATCH_REQUEST__INIT;
	char *addr;
	int rc;

	*s = NULL;
	if ((rc = watch_address(cfg, &addr, err, errlen)) != ST_OK)
		return rc;
	req.namespaces = cfg->chain;
	req.n_namespaces = cfg->nchain;
	req.prefix = "";
	req.after_revision = plat_config_revision(cfg);
	rc = plat_client_stream_open(cfg->client, addr, M_WATCH, &req.base, 0,
	    NULL, s, err, errlen);
	free(addr);
	if (rc != ST_OK)
		return rc;
	pthread_mutex_lock(&cfg->mu);
	cfg->stream = *s;
	if (cfg->stopping)
		plat_client_stream_cancel(*s);
	pthread_mutex_unlock(&cfg->mu);
	return ST_OK;
}

/* What the reader of one stream keeps between messages. */
struct watch_state {
	int caught_up;			/* the replay is over */
	int dirty;			/* a relevant change not read yet */
	int64_t dirty_since;
	int64_t retry_at;		/* after a failed refresh */
};

/* Notes one message: its revision, and whether to re-read. */
static void
watch_message(plat_config *cfg, const pb_watch_resp *ev,
    struct watch_state *st)
{
	const pb_value *v = ev->value;

	if (v != NULL) {
		pthread_mutex_lock(&cfg->mu);
		if (v->revision > cfg->revision)
			cfg->revision = v->revision;
		pthread_mutex_unlock(&cfg->mu);
	}
	if ((v != NULL && watch_relevant(cfg, v)) || ev->caught_up) {
		if (!st->dirty)
			st->dirty_since = plat_now_ms();
		st->dirty = 1;
	}
	if (ev->caught_up)
		st->caught_up = 1;
}

/* Re-reads when a change is due: the replay is over and either changes
 * stopped arriving (timed_out) or they have waited long enough. */
static void
watch_maybe_refresh(plat_config *cfg, struct watch_state *st, int timed_out)
{
	int64_t now = plat_now_ms();

	if (!st->dirty || !st->caught_up || now < st->retry_at)
		return;
	if (!timed_out && now - st->dirty_since < WATCH_COALESCE_MAX_MS)
		return;
	if (watch_refresh(cfg) == ST_OK)
		st->dirty = 0;
	else
		st->retry_at = now + WATCH_POLL_MS;
}

/* Reads one stream until it ends or the config is freed. Returns 1 when
 * it caught up (a working stream: the next reconnect starts quickly). */
static int
watch_read(plat_config *cfg, plat_client_stream *s)
{
	struct watch_state st = { 0 };
	ProtobufCMessage *m;
	int r, wait;

	for (;;) {
		wait = st.dirty && st.caught_up ? WATCH_COALESCE_MS :
		    WATCH_POLL_MS;
		r = plat_client_stream_next(s,
		    &platform__config__v1__watch_response__descriptor, &m,
		    wait);
		if (r == PLAT_STREAM_TIMEOUT) {
			if (watch_stopping(cfg))
				break;
			watch_maybe_refresh(cfg, &st, 1);
			continue;
		}
		if (r != PLAT_STREAM_MESSAGE)
			break;
		if (m != NULL) {
			watch_message(cfg, (pb_watch_resp *)m, &st);
			protobuf_c_message_free_unpacked(m, NULL);
		}
		watch_maybe_refresh(cfg, &st, 0);
	}
	return st.caught_up;
}

/* One stream from open to end. Returns its final status (err says why)
 * and sets *worked when it caught up. */
static int
watch_once(plat_config *cfg, int *worked, char *err, size_t errlen)
{
	plat_client_stream *s;
	int rc;

	*worked = 0;
	if ((rc = watch_open(cfg, &s, err, errlen)) != ST_OK)
		return rc;
	*worked = watch_read(cfg, s);
	pthread_mutex_lock(&cfg->mu);
	cfg->stream = NULL;
	pthread_mutex_unlock(&cfg->mu);
	rc = plat_client_stream_status(s, err, errlen);
	plat_client_stream_free(s);
	return rc;
}

/* Uniform in [ms/2, ms]: many clients of one config-srv spread out. */
static int64_t
watch_jitter(int64_t ms)
{
	static _Thread_local unsigned seed;

	if (seed == 0)
		seed = (unsigned)plat_now_ms() ^ (unsigned)(uintptr_t)&seed;
	return ms / 2 + rand_r(&seed) % (ms / 2 + 1);
}

static void *
watch_main(void *arg)
{
	plat_config *cfg = arg;
	int64_t backoff = WATCH_BACKOFF_MIN_MS;
	char err[ERRLEN];
	int rc, worked, warned = 0;

	pthread_mutex_lock(&cfg->mu);
	while (!cfg->stopping) {
		pthread_mutex_unlock(&cfg->mu);
		err[0] = '\0';
		rc = watch_once(cfg, &worked, err, sizeof(err));
		pthread_mutex_lock(&cfg->mu);
		if (cfg->stopping)
			break;
		/* Changes may be passing us by until the next catch-up. */
		cfg->stale = 1;
		if (worked) {
			backoff = WATCH_BACKOFF_MIN_MS;
			warned = 0;
		}
		if (!warned) {
			log_warn("config: watch lost; reconnecting", "namespace",
			    cfg->ns, "status", plat_status_name(rc), "error",
			    err);
			warned = 1;
		}
		plat_cond_wait_ms(&cfg->cv, &cfg->mu, watch_jitter(backoff),
		    &cfg->stopping);
		if ((backoff *= 2) > WATCH_BACKOFF_MAX_MS)
			backoff = WATCH_BACKOFF_MAX_MS;
	}
	pthread_mutex_unlock(&cfg->mu);
	return NULL;
}

int
plat_config_watch_start(plat_config *cfg)
{
	int rc = 0;

	if (!config_remote(cfg))
		return -1;
	pthread_mutex_lock(&cfg->mu);
	if (!cfg->watch_started && !cfg->stopping) {
		if (pthread_create(&cfg->thr, NULL, watch_main, cfg) != 0) {
			log_warn("config: cannot start the watch thread");
			rc = -1;
		} else
			cfg->watch_started = 1;
	}
	pthread_mutex_unlock(&cfg->mu);
	return rc;
}

void
plat_config_free(plat_config *cfg)
{
	int started;

	if (cfg == NULL)
		return;
	pthread_mutex_lock(&cfg->mu);
	cfg->stopping = 1;
	if (cfg->stream != NULL)
		plat_client_stream_cancel(cfg->stream);
	pthread_cond_broadcast(&cfg->cv);
	started = cfg->watch_started;
	pthread_mutex_unlock(&cfg->mu);
	if (started)
		pthread_join(cfg->thr, NULL);

	json_decref(cfg->local);
	json_decref(cfg->remote);
	json_decref(cfg->merged);
	free(cfg->defaults_json);
	free(cfg->file);
	free(cfg->env_prefix);
	strv_free(cfg->envp);
	free(cfg->address);
	free(cfg->service);
	free(cfg->ns);
	strv_free(cfg->paths);
	for (size_t i = 0; i < cfg->nchain; i++)
		free(cfg->chain[i]);
	free(cfg->chain);
	free(cfg->cache_file);
	pthread_cond_destroy(&cfg->cv);
	pthread_mutex_destroy(&cfg->mu);
	pthread_mutex_destroy(&cfg->fetch_mu);
	free(cfg);
}
