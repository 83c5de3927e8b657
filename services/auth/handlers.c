/*
 * handlers: auth-srv's lifecycle (store, keys, rules, bootstrap, the
 * maintenance thread), the caller checks every method shares, and the
 * method table. The methods themselves live in tokens.c, accounts.c and
 * policy.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "lockout.h"
#include "platform/checks.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "platform/pg.h"
#include "platform/xalloc.h"
#include "secret.h"

#define POOL_MIN 4
#define PURGE_EVERY_MS 60000
#define LOCKOUT_DELAY_STEP_MS 250
#define LOCKOUT_DELAY_MAX_MS 2000
#define BOOTSTRAP_ADMIN "admin"

struct auth_state A;

static struct {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	volatile int stop;
	int started;
	bool bootstrapped;
	bool keys_loaded;
	bool rules_loaded;
	int64_t last_purge_ms;
} M = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ---- shared checks ---- */

int
auth_store_error(plat_ctx *ctx, enum plat_code code, const char *err)
{
	return plat_error(ctx, code, "%s", err);
}

static bool
id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	    c == '@';
}

int
auth_check_id(plat_ctx *ctx, const char *field, const char *id)
{
	size_t n = strlen(id);

	if (n == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (n > AUTH_ID_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: longer "
		    "than %d bytes", field, AUTH_ID_MAX);
	for (size_t i = 0; i < n; i++)
		if (!id_char((unsigned char)id[i]))
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: only "
			    "letters, digits and ._-@ are allowed", field);
	return PLAT_OK;
}

int
auth_check_scope(plat_ctx *ctx, const char *field, const char *scope)
{
	size_t n = strlen(scope);

	if (n == 0 || n > AUTH_SCOPE_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: 1 to %d "
		    "bytes", field, AUTH_SCOPE_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)scope[i];

		if (!id_char(c) && c != ':' && c != '/')
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: only "
			    "letters, digits and ._-@:/ are allowed", field);
	}
	return PLAT_OK;
}

char **
auth_words(plat_ctx *ctx, const char *s, size_t *n)
{
	char *copy = plat_strdup(ctx, s != NULL ? s : ""), *p = copy;
	char **v = plat_alloc(ctx, (strlen(copy) / 2 + 2) * sizeof(*v));

	*n = 0;
	while (*(p += strspn(p, " ")) != '\0') {
		v[(*n)++] = p;
		p += strcspn(p, " ");
		if (*p != '\0')
			*p++ = '\0';
	}
	return v;
}

void
auth_account_fill(plat_ctx *ctx, Platform__Auth__V1__Account *out,
    const struct account *a)
{
	const char *key;
	json_t *v;

	platform__auth__v1__account__init(out);
	out->id = plat_strdup(ctx, a->id);
	out->type = (Platform__Auth__V1__AccountType)a->type;
	out->scopes = auth_words(ctx, a->scopes, &out->n_scopes);
	out->disabled = a->disabled;
	out->created_unix_ms = a->created_ms;
	out->updated_unix_ms = a->updated_ms;
	out->metadata = plat_alloc(ctx, (json_object_size(a->metadata) + 1) *
	    sizeof(*out->metadata));
	json_object_foreach(a->metadata, key, v) {
		Platform__Auth__V1__Account__MetadataEntry *e =
		    plat_alloc(ctx, sizeof(*e));

		platform__auth__v1__account__metadata_entry__init(e);
		e->key = plat_strdup(ctx, key);
		e->value = plat_strdup(ctx, json_string_value(v) != NULL ?
		    json_string_value(v) : "");
		out->metadata[out->n_metadata++] = e;
	}
}

/* ---- callers ---- */

int
auth_token_active(plat_ctx *ctx, const char *token, struct jwt_claims *out,
    char *err, size_t errlen)
{
	struct jwt_keyset *ks = keys_keyset(A.keys);
	struct jwt_expect expect = {
		.issuer = A.set.issuer,
		.audience = A.set.audience,
		.now = plat_wall_ms() / 1000,
	};
	struct account *acct = NULL;
	char serr[256];
	enum plat_code code;
	bool revoked = false;

	if (ks == NULL)
		return plat_error(ctx, PLAT_UNAVAILABLE, "signing keys not "
		    "loaded yet (database unavailable)");
	if (jwt_verify(ks, token, &expect, out, err, errlen) != JWT_OK) {
		jwt_keyset_unref(ks);
		return PLAT_UNAUTHENTICATED;
	}
	jwt_keyset_unref(ks);
	code = store_jti_revoked(A.store, out->jti,
	    plat_ctx_deadline_left_ms(ctx), &revoked, serr, sizeof(serr));
	if (code == PLAT_OK && !revoked)
		code = store_account_get(A.store, out->sub,
		    plat_ctx_deadline_left_ms(ctx), &acct, serr, sizeof(serr));
	if (code != PLAT_OK) {
		jwt_claims_free(out);
		return auth_store_error(ctx, code, serr);
	}
	if (revoked || acct == NULL || acct->disabled) {
		snprintf(err, errlen, "%s", revoked ? "token revoked" :
		    "token's account is disabled or deleted");
		account_free(acct);
		jwt_claims_free(out);
		return PLAT_UNAUTHENTICATED;
	}
	account_free(acct);
	return PLAT_OK;
}

int
auth_caller(plat_ctx *ctx, bool admin, struct jwt_claims *out)
{
	const char *token = jwt_bearer(plat_ctx_metadata(ctx,
	    "authorization"));
	char err[256];
	int rc;

	memset(out, 0, sizeof(*out));
	if (token == NULL)
		return plat_error(ctx, PLAT_UNAUTHENTICATED, "this call needs "
		    "an access token: authorization metadata \"Bearer "
		    "<token>\"");
	rc = auth_token_active(ctx, token, out, err, sizeof(err));
	if (rc == PLAT_UNAUTHENTICATED)
		return plat_error(ctx, rc, "caller's access token: %s", err);
	if (rc != PLAT_OK)
		return rc;
	if (admin && !jwt_claims_has_scope(out, AUTH_ADMIN_SCOPE)) {
		jwt_claims_free(out);
		return plat_error(ctx, PLAT_PERMISSION_DENIED, "this call "
		    "needs the scope \"%s\"", AUTH_ADMIN_SCOPE);
	}
	return PLAT_OK;
}

/* ---- bootstrap ---- */

/* mkdir -p of the folder path is in, mode 0700 for what it makes. */
static int
make_parent(const char *path)
{
	char *dir = xstrdup(path), *p;
	int rc = 0;

	if ((p = strrchr(dir, '/')) == NULL || p == dir) {
		free(dir);
		return 0;
	}
	*p = '\0';
	for (p = dir + 1; rc == 0; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			rc = -1;
		*p = c;
		if (c == '\0')
			break;
	}
	free(dir);
	return rc;
}

/* Writes the credentials to path.tmp, mode 0600. */
static int
bootstrap_write(const char *tmp, const char *id, const char *secret)
{
	json_t *doc = json_pack("{s:s, s:s, s:s, s:s}", "client_id", id,
	    "client_secret", secret, "grant_type", "client_credentials",
	    "scope", AUTH_ADMIN_SCOPE);
	char *text = json_dumps(doc, JSON_INDENT(2));
	int fd, rc = -1;

	json_decref(doc);
	(void)make_parent(tmp);
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd >= 0 && text != NULL &&
	    write(fd, text, strlen(text)) == (ssize_t)strlen(text) &&
	    write(fd, "\n", 1) == 1 && fsync(fd) == 0)
		rc = 0;
	if (fd >= 0)
		close(fd);
	if (rc != 0)
		log_error("auth: cannot write the bootstrap file", "path", tmp,
		    "error", strerror(errno));
	secret_free(text);
	return rc;
}

static struct rule *
bootstrap_rule(const char *id, const char *service, const char *method,
    const char *scope, int type, int32_t priority, const char *desc)
{
	struct rule r = {
		.id = (char *)id,
		.service = (char *)service,
		.method = (char *)method,
		.account = "",
		.scope = (char *)scope,
		.account_type = type,
		.effect = RULE_ALLOW,
		.priority = priority,
		.description = (char *)desc,
		.created_ms = plat_wall_ms(),
	};

	return rule_copy(&r);
}

/* What a fleet needs from the first start: the admin may call
 * everything; every server (a service account) registers, heartbeats,
 * deregisters and looks others up in discovery, and publishes its
 * platform events. */
static const struct bootstrap_rule {
	const char *id, *service, *method, *scope;
	int type;
	int32_t priority;
	const char *description;
} bootstrap_rules[] = {
	{ "bootstrap-admin", "*", "*", AUTH_ADMIN_SCOPE, RULE_ANY_TYPE, 1000,
	  "the admin scope may call everything" },
	{ "bootstrap-discovery-register", "platform.discovery.v1.Discovery",
	  "Register", "", RULE_SERVICE, 0,
	  "every service account registers and heartbeats" },
	{ "bootstrap-discovery-deregister", "platform.discovery.v1.Discovery",
	  "Deregister", "", RULE_SERVICE, 0,
	  "every service account deregisters" },
	{ "bootstrap-discovery-get-service", "platform.discovery.v1.Discovery",
	  "GetService", "", RULE_SERVICE, 0,
	  "every service account looks up services" },
	{ "bootstrap-discovery-list-services",
	  "platform.discovery.v1.Discovery", "ListServices", "",
	  RULE_SERVICE, 0, "every service account lists services" },
	{ "bootstrap-discovery-watch", "platform.discovery.v1.Discovery",
	  "Watch", "", RULE_SERVICE, 0,
	  "every service account watches the registry" },
	{ "bootstrap-event-publish", "platform.event.v1.Event", "Publish*", "",
	  RULE_SERVICE, 0, "every service account publishes platform events" },
	{ "bootstrap-router-select", "platform.router.v1.Router", "Select",
	  "", RULE_SERVICE, 0, "every service account asks router-srv for "
	  "its weights" },
	{ "bootstrap-router-watch", "platform.router.v1.Router", "Watch", "",
	  RULE_SERVICE, 0, "every service account follows router-srv's "
	  "views" },
	{ "bootstrap-router-report", "platform.router.v1.Router", "Report",
	  "", RULE_SERVICE, 0, "every service account reports its call "
	  "stats to router-srv" },
	{ "bootstrap-kv-replicate", "platform.kv.v1.KV", "Replicate",
	  "kv.peer", RULE_SERVICE, 0,
	  "kv-srv nodes (scope kv.peer) copy entries to each other" },
	{ "bootstrap-monitor-report", "platform.monitor.v1.Monitor",
	  "ReportCheck", "", RULE_SERVICE, 0,
	  "every service account reports its own checks" },
	{ "bootstrap-monitor-peers", "platform.monitor.v1.Monitor", "*",
	  "monitor.peer", RULE_SERVICE, 0,
	  "monitor-srv replicas (scope monitor.peer) ask each other for "
	  "their part of the fleet" },
};
#define BOOTSTRAP_NRULES \
	(sizeof(bootstrap_rules) / sizeof(bootstrap_rules[0]))

/* On the very first start: the admin account, its credentials in the
 * bootstrap file, and the first rules. PLAT_OK when done or not needed. */
static enum plat_code
bootstrap(void)
{
	const char *path = A.set.bootstrap_file;
	char hash[SECRET_HASH_MAX], err[256], *tmp, *secret;
	struct rule *rules[BOOTSTRAP_NRULES];
	struct account admin = {
		.id = BOOTSTRAP_ADMIN,
		.type = RULE_SERVICE,
		.scopes = AUTH_ADMIN_SCOPE,
		.secret_hash = hash,
	};
	enum plat_code code;
	bool done = false;

	if ((secret = secret_random(AUTH_GENERATED_SECRET_BYTES)) == NULL ||
	    secret_hash(secret, hash) != 0) {
		secret_free(secret);
		return PLAT_INTERNAL;
	}
	tmp = xcalloc(1, strlen(path) + 5);
	sprintf(tmp, "%s.tmp", path);
	/* The file first, so that committed credentials are never lost;
	 * it is renamed into place once the database has them. */
	if (bootstrap_write(tmp, BOOTSTRAP_ADMIN, secret) != 0) {
		secret_free(secret);
		free(tmp);
		return PLAT_INTERNAL;
	}
	secret_free(secret);
	admin.metadata = json_pack("{s:s}", "created_by", "bootstrap");
	for (size_t i = 0; i < BOOTSTRAP_NRULES; i++) {
		const struct bootstrap_rule *b = &bootstrap_rules[i];

		rules[i] = bootstrap_rule(b->id, b->service, b->method,
		    b->scope, b->type, b->priority, b->description);
	}
	code = store_bootstrap(A.store, &admin, rules, BOOTSTRAP_NRULES,
	    &done, err, sizeof(err));
	for (size_t i = 0; i < BOOTSTRAP_NRULES; i++)
		rule_free(rules[i]);
	json_decref(admin.metadata);
	explicit_bzero(hash, sizeof(hash));
	if (code == PLAT_OK && done && rename(tmp, path) != 0) {
		log_error("auth: bootstrapped, but cannot move the credentials "
		    "file into place; they are in the .tmp file", "path", tmp,
		    "error", strerror(errno));
	} else if (code == PLAT_OK && done) {
		log_warn("auth: first start: made the admin account; its "
		    "credentials are in the bootstrap file (mode 0600): read "
		    "them, store them safely, delete the file", "path", path,
		    "client_id", BOOTSTRAP_ADMIN);
	} else {
		unlink(tmp);
		if (code != PLAT_OK)
			log_warn("auth: bootstrap failed", "error", err);
	}
	free(tmp);
	return code;
}

/* ---- maintenance ---- */

/* One round: schema, bootstrap, keys, rules, purge; each until done. */
static void
maintain(void)
{
	char err[256];
	enum plat_code code;
	int64_t now = plat_now_ms();

	if (!pg_store_ready(A.store)) {
		code = pg_store_migrate(A.store, err, sizeof(err));
		if (code != PLAT_OK)
			return;
		log_info("auth: database schema ready");
	}
	if (!M.bootstrapped && bootstrap() == PLAT_OK)
		M.bootstrapped = true;
	code = keys_sync(A.keys, err, sizeof(err));
	if (code != PLAT_OK && code != PLAT_UNAVAILABLE)
		log_error("auth: signing keys", "error", err);
	if (code == PLAT_OK)
		M.keys_loaded = true;
	if (!M.rules_loaded && auth_rules_reload(err, sizeof(err)) == PLAT_OK)
		M.rules_loaded = true;
	if (now - M.last_purge_ms >= PURGE_EVERY_MS &&
	    store_purge(A.store, plat_wall_ms(), err, sizeof(err)) == PLAT_OK)
		M.last_purge_ms = now;
}

static void *
maintain_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&M.mu);
	while (!M.stop) {
		plat_cond_wait_ms(&M.cv, &M.mu, keys_period_ms(A.keys),
		    &M.stop);
		if (M.stop)
			break;
		pthread_mutex_unlock(&M.mu);
		maintain();
		pthread_mutex_lock(&M.mu);
	}
	pthread_mutex_unlock(&M.mu);
	return NULL;
}

/* ---- lifecycle ---- */

static void
teardown(void)
{
	lockout_stop();
	auth_rules_fini();
	keys_free(A.keys);
	pg_store_free(A.store);
	A.keys = NULL;
	A.store = NULL;
}

int
auth_init(plat_server *srv, const struct plat_settings *s)
{
	struct lockout_config lc;
	unsigned char kek[32];
	char err[512];
	int pool;

	if (auth_settings_load(&A.set, err, sizeof(err)) != 0) {
		fprintf(stderr, "auth-srv: %s\n", err);
		return -1;
	}
	(void)make_parent(A.set.kek_file);
	if (keys_kek_load(A.set.kek_file, kek, err, sizeof(err)) != 0) {
		log_error("auth: key-encryption key", "error", err);
		fprintf(stderr, "auth-srv: --kek-file: %s\n", err);
		return -1;
	}
	if (secret_init() != 0) {
		explicit_bzero(kek, sizeof(kek));
		return -1;
	}
	pool = s->workers * 2 < POOL_MIN ? POOL_MIN : s->workers * 2;
	if ((A.store = store_new(s->database, pool)) == NULL) {
		explicit_bzero(kek, sizeof(kek));
		return -1;
	}
	A.keys = keys_new(A.store, kek, A.set.key_alg, A.set.key_rotation_s,
	    A.set.token_ttl_s, A.set.token_ttl_s * 1000 < 60000 ?
	    A.set.token_ttl_s * 1000 : 60000);
	explicit_bzero(kek, sizeof(kek));
	M.stop = 0;
	plat_cond_init(&M.cv);
	maintain();
	if (pg_store_ready(A.store) && !M.keys_loaded) {
		/* The database is there but the keys are not usable: a
		 * wrong --kek-file. Stop rather than sign with new keys. */
		fprintf(stderr, "auth-srv: cannot load the signing keys "
		    "(see the log)\n");
		goto fail;
	}
	if (!pg_store_ready(A.store))
		log_warn("auth: database unavailable at start; answering "
		    "UNAVAILABLE until it is reachable");
	lc = (struct lockout_config){
		.account_failures = A.set.lockout_failures,
		.peer_failures = A.set.lockout_peer_failures,
		.lock_ms = A.set.lockout_s * 1000,
		.delay_step_ms = LOCKOUT_DELAY_STEP_MS,
		.delay_max_ms = LOCKOUT_DELAY_MAX_MS,
	};
	if (lockout_start(&lc) != 0 || auth_rules_start(s->database) != 0)
		goto fail;
	if (pthread_create(&M.thread, NULL, maintain_main, NULL) != 0)
		goto fail;
	M.started = 1;
	(void)plat_check_declare_database(srv, A.store);
	return 0;
fail:
	teardown();
	return -1;
}

void
auth_fini(plat_server *srv)
{
	(void)srv;
	if (M.started) {
		pthread_mutex_lock(&M.mu);
		M.stop = 1;
		pthread_cond_signal(&M.cv);
		pthread_mutex_unlock(&M.mu);
		pthread_join(M.thread, NULL);
		M.started = 0;
	}
	teardown();
}

/* ---- the method table ---- */

#define AUTH_PATH "/platform.auth.v1.Auth/"

#define UNARY(name, fn, type, idem) \
	PLAT_UNARY(AUTH_PATH, name, platform__auth__v1, type, fn, idem)

const struct plat_method auth_methods[] = {
	UNARY("Token", auth_token, token, 0),
	UNARY("Inspect", auth_inspect, inspect, 1),
	UNARY("Revoke", auth_revoke, revoke, 1),
	UNARY("PublicKeys", auth_public_keys, public_keys, 1),
	UNARY("Verify", auth_verify, verify, 1),
	UNARY("CreateAccount", auth_create_account, create_account, 0),
	UNARY("GetAccount", auth_get_account, get_account, 1),
	UNARY("UpdateAccount", auth_update_account, update_account, 0),
	UNARY("DeleteAccount", auth_delete_account, delete_account, 0),
	UNARY("ListAccounts", auth_list_accounts, list_accounts, 1),
	UNARY("CreateRule", auth_create_rule, create_rule, 0),
	UNARY("DeleteRule", auth_delete_rule, delete_rule, 0),
	UNARY("ListRules", auth_list_rules, list_rules, 1),
	{
		.path = AUTH_PATH "WatchRules",
		.kind = PLAT_METHOD_SERVER_STREAM,
		.request = &platform__auth__v1__watch_rules_request__descriptor,
		.response =
		    &platform__auth__v1__watch_rules_response__descriptor,
		.stream = auth_watch_rules,
	},
};
