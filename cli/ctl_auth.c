/*
 * ctl_auth: `platformctl login|logout|token|accounts|rules`, and the
 * stored token every command sends. See ctl_auth.h.
 *
 * A login is kept in the token file (ctl_token.h): the access token, a
 * user's refresh token, when the access token expires, the account, and
 * the auth-srv address if one was given. Secrets (a password, a client
 * secret) are only ever sent, never stored or printed; tokens are printed
 * only by `token`. Strings that held either are wiped before they are
 * freed.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_auth.h"
#include "ctl_call.h"
#include "ctl_out.h"
#include "ctl_token.h"
#include "platform/auth/v1/auth.pb-c.h"
#include "platform/client.h"
#include "platform/xalloc.h"

#define PROG		"platformctl"
#define AUTH_SERVICE	"auth"
#define M_PREFIX	"/platform.auth.v1.Auth/"
#define ERRLEN		512
#define PAGE_SIZE	1000	/* the server's maximum: fewest calls */
#define SECRET_MAX	4096
/* `token` hands out a token good for at least this long, for the
 * command it is pasted into; other commands only need it to outlive
 * their own call. */
#define MARGIN_TOKEN	30
#define MARGIN_CALL	5
#define UNAUTHENTICATED	16
#define PERMISSION_DENIED 7

typedef Platform__Auth__V1__Account			pb_account;
typedef Platform__Auth__V1__Account__MetadataEntry	pb_meta;
typedef Platform__Auth__V1__Rule			pb_rule;
#define T_USER		PLATFORM__AUTH__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_USER
#define T_SERVICE	PLATFORM__AUTH__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_SERVICE
#define E_ALLOW		PLATFORM__AUTH__V1__EFFECT__EFFECT_ALLOW
#define E_DENY		PLATFORM__AUTH__V1__EFFECT__EFFECT_DENY

/* ---- the stored login, shared by every command ---- */

static struct {
	int loaded, have;		/* the file was read; it held a login */
	struct ctl_token t;
	int md_done;			/* ctl_auth_metadata decided */
	char *bearer;
	const char *md[3];
} st;

void
ctl_auth_cleanup(void)
{
	ctl_token_clear(&st.t);
	ctl_wipe_free(st.bearer);
	st.bearer = NULL;
	st.md[1] = NULL;
}

/* The login in the file, read once; NULL when there is none. */
static struct ctl_token *
stored(void)
{
	if (!st.loaded) {
		st.loaded = 1;
		st.have = ctl_token_load(&st.t) == 0;
	}
	return st.have ? &st.t : NULL;
}

/* Replaces the login in memory (t is taken over and emptied). */
static void
stored_set(struct ctl_token *t)
{
	ctl_token_clear(&st.t);
	st.t = *t;
	memset(t, 0, sizeof(*t));
	st.loaded = st.have = 1;
	if (st.bearer != NULL) {
		ctl_wipe_free(st.bearer);
		if (asprintf(&st.bearer, "Bearer %s", st.t.access_token) < 0)
			abort();
		st.md[1] = st.bearer;
	}
}

/* One unary call to auth-srv: at --auth, else at the address given at
 * login, else at a node of the service "auth" found through discovery.
 * The gRPC status; err says why it failed. */
static int
auth_call(const struct ctl_globals *g, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent, const char *const *md,
    char *err)
{
	const char *addr = g->auth;

	if (addr == NULL && stored() != NULL)
		addr = st.t.auth;
	return ctl_unary(g, AUTH_SERVICE, addr, method, req, desc, resp,
	    idempotent, md, err, ERRLEN);
}

/* Wipes the tokens of a TokenResponse and frees it. */
static void
token_response_free(Platform__Auth__V1__TokenResponse *r)
{
	if (r == NULL)
		return;
	explicit_bzero(r->access_token, strlen(r->access_token));
	explicit_bzero(r->refresh_token, strlen(r->refresh_token));
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* A login from a Token answer (the strings copied). */
static void
token_of(struct ctl_token *t, const Platform__Auth__V1__TokenResponse *r,
    const char *account, const char *auth)
{
	t->access_token = xstrdup(r->access_token);
	t->refresh_token = *r->refresh_token != '\0' ?
	    xstrdup(r->refresh_token) : NULL;
	t->expires_at = (int64_t)time(NULL) + r->expires_in;
	t->account = xstrdup(account);
	t->auth = auth != NULL ? xstrdup(auth) : NULL;
}

/* Spends the stored refresh token for a new pair and saves it. Under
 * the lock the file is read again first: another platformctl may have
 * refreshed it meanwhile, and the old refresh token is spent then. 0, or
 * 1 after a message. */
static int
token_refresh(const struct ctl_globals *g, int64_t margin)
{
	Platform__Auth__V1__TokenRequest req =
	    PLATFORM__AUTH__V1__TOKEN_REQUEST__INIT;
	ProtobufCMessage *m;
	struct ctl_token t;
	char err[ERRLEN];
	int lock = ctl_token_lock(), rc;

	if (ctl_token_load(&t) == 0 && strcmp(t.account, st.t.account) == 0)
		stored_set(&t);
	ctl_token_clear(&t);
	if (st.t.expires_at - margin > (int64_t)time(NULL)) {
		ctl_token_unlock(lock);
		return 0;
	}
	if (st.t.refresh_token == NULL) {
		ctl_token_unlock(lock);
		fprintf(stderr, PROG ": the login of %s has expired; log in "
		    "again ('" PROG " login')\n", st.t.account);
		return 1;
	}
	req.grant_type = "refresh_token";
	req.refresh_token = st.t.refresh_token;
	rc = auth_call(g, M_PREFIX "Token", &req.base,
	    &platform__auth__v1__token_response__descriptor, &m, 0, NULL, err);
	if (rc != 0) {
		ctl_token_unlock(lock);
		ctl_fail("Token", rc, err);
		fprintf(stderr, PROG ": cannot refresh the login of %s; log "
		    "in again ('" PROG " login')\n", st.t.account);
		return 1;
	}
	token_of(&t, (Platform__Auth__V1__TokenResponse *)m, st.t.account,
	    st.t.auth);
	token_response_free((Platform__Auth__V1__TokenResponse *)m);
	stored_set(&t);
	rc = ctl_token_save(&st.t) != 0;
	ctl_token_unlock(lock);
	return rc;
}

/* 0 when the stored access token is good for margin seconds more,
 * refreshed first when it had to be; 1 after a message. */
static int
token_fresh(const struct ctl_globals *g, int64_t margin)
{
	if (st.t.expires_at - margin > (int64_t)time(NULL))
		return 0;
	return token_refresh(g, margin);
}

const char *const *
ctl_auth_metadata(const struct ctl_globals *g)
{
	if (st.md_done)
		return st.bearer != NULL ? st.md : NULL;
	st.md_done = 1;
	if (stored() == NULL || token_fresh(g, MARGIN_CALL) != 0)
		return NULL;
	if (asprintf(&st.bearer, "Bearer %s", st.t.access_token) < 0)
		abort();
	st.md[0] = "authorization";
	st.md[1] = st.bearer;
	st.md[2] = NULL;
	return st.md;
}

/* Only what ctl_auth_metadata already made: this runs inside the
 * client, also under a refresh's own call to auth-srv (which holds the
 * token file's lock), so it must never refresh itself. */
int
ctl_auth_token(void *arg, char *buf, size_t len)
{
	(void)arg;
	if (!st.md_done || st.bearer == NULL ||
	    strncmp(st.bearer, "Bearer ", 7) != 0 ||
	    (size_t)snprintf(buf, len, "%s", st.bearer + 7) >= len)
		return -1;
	return 0;
}

/* ---- the commands' flags ---- */

struct au_flags {
	const char *credentials, *type, *service, *method, *account;
	const char *allow, *deny, *priority, *description, *new_secret;
	struct ctl_list scope, meta;
};

/* The flags of a run (the command table fills them). */
static const struct au_flags *
au_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_auth_group, __VA_ARGS__)

/* A failed call; says what to do when the login is missing or lacks
 * the right. */
static int
au_fail(const char *method, int code, const char *err)
{
	ctl_fail(ctl_method_name(method), code, err);
	if (code == UNAUTHENTICATED && stored() == NULL)
		fprintf(stderr, PROG ": not logged in: run '" PROG
		    " login'\n");
	else if (code == PERMISSION_DENIED && stored() != NULL)
		fprintf(stderr, PROG ": logged in as %s; accounts and rules "
		    "need the scope platform:admin\n", st.t.account);
	return CTL_FAIL;
}

/* A call with the stored token: CTL_OK, or CTL_FAIL after a message. */
static int
au_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	char err[ERRLEN];
	int rc;

	rc = auth_call(x->g, method, req, desc, resp, idempotent,
	    ctl_auth_metadata(x->g), err);
	return rc != 0 ? au_fail(method, rc, err) : CTL_OK;
}

/* ---- login, logout, token ---- */

static struct termios tty_saved;

/* Echo back on before a signal ends us halfway through a password. */
static void
tty_restore(int sig)
{
	tcsetattr(STDIN_FILENO, TCSANOW, &tty_saved);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One line of stdin without its line end, malloc'd; from a terminal
 * after prompt, without echo when secret. NULL after a message. */
static char *
read_line(const char *prompt, int secret)
{
	char buf[SECRET_MAX + 2], *line = NULL;
	struct termios quiet;
	int tty = isatty(STDIN_FILENO), quiet_on = 0;
	size_t n;

	if (tty) {
		fprintf(stderr, "%s", prompt);
		fflush(stderr);
		if (secret && tcgetattr(STDIN_FILENO, &tty_saved) == 0) {
			quiet = tty_saved;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			signal(SIGINT, tty_restore);
			signal(SIGTERM, tty_restore);
			quiet_on = tcsetattr(STDIN_FILENO, TCSAFLUSH,
			    &quiet) == 0;
		}
	}
	if (fgets(buf, sizeof(buf), stdin) != NULL) {
		n = strcspn(buf, "\r\n");
		if (buf[n] != '\0' || feof(stdin)) {
			buf[n] = '\0';
			line = xstrdup(buf);
		}
	}
	if (quiet_on) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &tty_saved);
		fputc('\n', stderr);
	}
	if (secret) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
	}
	explicit_bzero(buf, sizeof(buf));
	if (line == NULL || *line == '\0') {
		fprintf(stderr, PROG ": login: %s\n", line == NULL ?
		    "nothing read from stdin (or a line over 4096 bytes)" :
		    "an empty line on stdin");
		free(line);
		return NULL;
	}
	return line;
}

/* client_id and client_secret from a JSON file like auth-srv's bootstrap
 * file. 0, or CTL_USAGE after a message (that never quotes the file). */
static int
read_credentials(const char *path, char **id, char **secret)
{
	json_error_t je;
	json_t *o = json_load_file(path, 0, &je), *i, *s;
	const char *k;
	json_t *v;
	int rc = CTL_USAGE;

	i = json_object_get(o, "client_id");
	s = json_object_get(o, "client_secret");
	if (o == NULL)
		fprintf(stderr, PROG ": login: cannot read %s: %s\n", path,
		    je.line < 1 ? je.text : "not JSON");
	else if (!json_is_string(i) || !json_is_string(s) ||
	    json_string_length(i) == 0 || json_string_length(s) == 0)
		fprintf(stderr, PROG ": login: %s needs \"client_id\" and "
		    "\"client_secret\"\n", path);
	else {
		*id = xstrdup(json_string_value(i));
		*secret = xstrdup(json_string_value(s));
		rc = 0;
	}
	json_object_foreach(o, k, v)
		if (json_is_string(v))
			explicit_bzero((char *)json_string_value(v),
			    json_string_length(v));
	json_decref(o);
	return rc;
}

/* The --scope values, space-separated (malloc'd). */
static char *
scopes_joined(const struct ctl_run *x)
{
	const struct au_flags *fl = au_f(x);
	char *buf;
	size_t len;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		abort();
	for (size_t i = 0; i < fl->scope.n; i++)
		fprintf(f, "%s%s", i ? " " : "", fl->scope.v[i]);
	fclose(f);
	return buf;
}

static int
au_login(const struct ctl_run *x, int argc, char **argv)
{
	const struct au_flags *f = au_f(x);
	Platform__Auth__V1__TokenRequest req =
	    PLATFORM__AUTH__V1__TOKEN_REQUEST__INIT;
	Platform__Auth__V1__TokenResponse *r;
	ProtobufCMessage *m;
	struct ctl_token t = { 0 };
	char *id = NULL, *secret = NULL, *scope, *path, err[ERRLEN];
	char prompt[300];
	int rc, lock;

	if (f->credentials != NULL) {
		if (argc > 0)
			return usage_error("login: an ID or --credentials, "
			    "not both");
		if ((rc = read_credentials(f->credentials, &id,
		    &secret)) != 0)
			return rc;
		req.grant_type = "client_credentials";
		req.client_id = id;
		req.client_secret = secret;
	} else {
		if (argc > 0)
			id = xstrdup(argv[0]);
		else if (!isatty(STDIN_FILENO))
			return usage_error("login: missing ID (or "
			    "--credentials FILE)");
		else if ((id = read_line("Account: ", 0)) == NULL)
			return CTL_USAGE;
		snprintf(prompt, sizeof(prompt), "Password for %s: ", id);
		if ((secret = read_line(prompt, 1)) == NULL) {
			free(id);
			return CTL_USAGE;
		}
		req.grant_type = "password";
		req.username = id;
		req.password = secret;
	}
	req.scope = scope = scopes_joined(x);
	rc = auth_call(x->g, M_PREFIX "Token", &req.base,
	    &platform__auth__v1__token_response__descriptor, &m, 0, NULL, err);
	ctl_wipe_free(secret);
	free(scope);
	if (rc != 0) {
		free(id);
		return au_fail("Token", rc, err);
	}
	r = (Platform__Auth__V1__TokenResponse *)m;
	token_of(&t, r, id, x->g->auth);
	lock = ctl_token_lock();
	rc = ctl_token_save(&t) != 0 ? CTL_FAIL : CTL_OK;
	ctl_token_unlock(lock);
	if (rc == CTL_OK && (path = ctl_token_path()) != NULL) {
		if (x->g->json)
			rc = ctl_json_print(json_pack("{s:o, s:o, s:I, s:o}",
			    "account", ctl_jstr(id), "scope",
			    ctl_jstr(r->scope), "expires_at",
			    (json_int_t)t.expires_at, "token_file",
			    ctl_jstr(path)), 0);
		else
			ctl_put_line(stdout, "logged in as %s (scope \"%s\", "
			    "the token expires in %" PRId64 " s%s); kept in "
			    "%s", id, r->scope, r->expires_in,
			    t.refresh_token ? " and is refreshed" : "", path);
		free(path);
	}
	stored_set(&t);
	token_response_free(r);
	free(id);
	return rc;
}

/* Revokes one token at auth-srv (best effort): 0, or 1 after a line. */
static int
revoke_one(const struct ctl_run *x, const char *token, const char *hint)
{
	Platform__Auth__V1__RevokeRequest req =
	    PLATFORM__AUTH__V1__REVOKE_REQUEST__INIT;
	ProtobufCMessage *m;
	char err[ERRLEN];
	int rc;

	req.token = (char *)token;
	req.token_type_hint = (char *)hint;
	rc = auth_call(x->g, M_PREFIX "Revoke", &req.base,
	    &platform__auth__v1__revoke_response__descriptor, &m, 1,
	    ctl_auth_metadata(x->g), err);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	if (rc != 0)
		ctl_fail("Revoke", rc, err);
	return rc != 0;
}

static int
au_logout(const struct ctl_run *x, int argc, char **argv)
{
	char *account;
	int bad = 0;

	if (stored() == NULL) {
		if (st.loaded && ctl_token_remove() != 0)
			return CTL_FAIL;
		fprintf(stderr, PROG ": not logged in\n");
		return CTL_OK;
	}
	/* A token that expired for good needs no revoking; one that can
	 * be refreshed is refreshed (ctl_auth_metadata) so that Revoke is
	 * allowed, and its family ends with it. */
	if (st.t.refresh_token != NULL ||
	    st.t.expires_at > (int64_t)time(NULL)) {
		if (ctl_auth_metadata(x->g) == NULL)
			bad = 1;
		else {
			if (st.t.refresh_token != NULL)
				bad |= revoke_one(x, st.t.refresh_token,
				    "refresh_token");
			bad |= revoke_one(x, st.t.access_token, "access_token");
		}
		if (bad)
			fprintf(stderr, PROG ": logout: not revoked at "
			    "auth-srv; the tokens stay valid until they "
			    "expire\n");
	}
	if (ctl_token_remove() != 0)
		return CTL_FAIL;
	account = xstrdup(st.t.account);
	ctl_auth_cleanup();
	st.have = 0;
	if (x->g->json)
		ctl_json_print(json_pack("{s:o, s:b}", "logged_out",
		    ctl_jstr(account), "revoked", !bad), 0);
	else
		ctl_put_line(stdout, "logged out of %s%s", account,
		    bad ? "" : " (tokens revoked)");
	free(account);
	return CTL_OK;
}

static int
au_token(const struct ctl_run *x, int argc, char **argv)
{
	if (stored() == NULL) {
		fprintf(stderr, PROG ": not logged in: run '" PROG
		    " login'\n");
		return CTL_FAIL;
	}
	if (token_fresh(x->g, MARGIN_TOKEN) != 0)
		return CTL_FAIL;
	if (x->g->json)
		return ctl_json_print(json_pack("{s:s, s:I, s:o}",
		    "access_token", st.t.access_token, "expires_at",
		    (json_int_t)st.t.expires_at, "account",
		    ctl_jstr(st.t.account)), 0);
	printf("%s\n", st.t.access_token);
	return CTL_OK;
}

/* ---- printing accounts and rules ---- */

static const char *
type_name(int t)
{
	return t == T_USER ? "user" : t == T_SERVICE ? "service" : "-";
}

static int
type_of(const char *s, Platform__Auth__V1__AccountType *t)
{
	if (s == NULL)
		return 0;
	if (strcmp(s, "user") == 0)
		*t = T_USER;
	else if (strcmp(s, "service") == 0)
		*t = T_SERVICE;
	else
		return usage_error("--type must be user or service, not '%s'",
		    s);
	return 0;
}

/* "2025-01-02T03:04:05Z", or "-" for no time. */
static void
utc(char *buf, size_t len, int64_t unix_ms)
{
	time_t s = (time_t)(unix_ms / 1000);
	struct tm tm;

	if (unix_ms <= 0 || gmtime_r(&s, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "-");
}

static json_t *
strings_json(char **s, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, ctl_jstr(s[i]));
	return a;
}

static json_t *
account_json(const pb_account *a)
{
	json_t *md = json_object();

	for (size_t i = 0; i < a->n_metadata; i++)
		json_object_set_new(md, a->metadata[i]->key,
		    ctl_jstr(a->metadata[i]->value));
	return json_pack("{s:o, s:s, s:o, s:o, s:b, s:I, s:I}",
	    "id", ctl_jstr(a->id), "type", type_name(a->type),
	    "scopes", strings_json(a->scopes, a->n_scopes), "metadata", md,
	    "disabled", (int)a->disabled,
	    "created_unix_ms", (json_int_t)a->created_unix_ms,
	    "updated_unix_ms", (json_int_t)a->updated_unix_ms);
}

static int
meta_cmp(const void *a, const void *b)
{
	return strcmp((*(pb_meta *const *)a)->key, (*(pb_meta *const *)b)->key);
}

static void
account_row(struct ctl_table *t, const pb_account *a)
{
	char *scopes, *md, created[32];
	size_t len;
	FILE *f;

	if ((f = open_memstream(&scopes, &len)) == NULL)
		abort();
	for (size_t i = 0; i < a->n_scopes; i++)
		fprintf(f, "%s%s", i ? "," : "", a->scopes[i]);
	fputs(a->n_scopes == 0 ? "-" : "", f);
	fclose(f);
	/* Maps arrive in any order; sorted, output is stable to diff. */
	if (a->n_metadata > 0)
		qsort(a->metadata, a->n_metadata, sizeof(*a->metadata),
		    meta_cmp);
	if ((f = open_memstream(&md, &len)) == NULL)
		abort();
	for (size_t i = 0; i < a->n_metadata; i++)
		fprintf(f, "%s%s=%s", i ? "," : "", a->metadata[i]->key,
		    a->metadata[i]->value);
	fputs(a->n_metadata == 0 ? "-" : "", f);
	fclose(f);
	utc(created, sizeof(created), a->created_unix_ms);
	ctl_table_row(t, (const char *const[]){ a->id, type_name(a->type),
	    scopes, a->disabled ? "disabled" : "enabled", md, created });
	free(scopes);
	free(md);
}

static const char *const account_head[] = { "ID", "TYPE", "SCOPES",
    "STATUS", "METADATA", "CREATED" };

/* One account (with its new secret, if any) as a table or JSON. */
static int
account_print(const struct ctl_run *x, const pb_account *a, char *secret)
{
	struct ctl_table t = { .ncols = CTL_NELEM(account_head) };
	int shown = secret != NULL && *secret != '\0', rc = CTL_OK;
	json_t *j;

	if (a == NULL)
		return CTL_OK;
	if (x->g->json) {
		j = account_json(a);
		if (shown)
			json_object_set_new(j, "secret", ctl_jstr(secret));
		rc = ctl_json_print(j, 0);
	} else {
		ctl_table_row(&t, account_head);
		account_row(&t, a);
		ctl_table_print(&t, stdout);
		ctl_table_free(&t);
		if (shown)
			ctl_put_line(stdout, "secret: %s", secret);
	}
	if (shown) {
		fflush(stdout);
		fprintf(stderr, PROG ": the secret is shown only this once; "
		    "keep it safely\n");
	}
	return rc;
}

static json_t *
rule_json(const pb_rule *r)
{
	json_t *j = json_pack("{s:o, s:o, s:o, s:s, s:i, s:I}",
	    "id", ctl_jstr(r->id), "service", ctl_jstr(r->service),
	    "method", ctl_jstr(r->method),
	    "effect", r->effect == E_ALLOW ? "allow" :
	    r->effect == E_DENY ? "deny" : "-",
	    "priority", (int)r->priority,
	    "created_unix_ms", (json_int_t)r->created_unix_ms);

	if (*r->account != '\0')
		json_object_set_new(j, "account", ctl_jstr(r->account));
	if (*r->scope != '\0')
		json_object_set_new(j, "scope", ctl_jstr(r->scope));
	if (r->account_type != 0)
		json_object_set_new(j, "account_type",
		    json_string(type_name(r->account_type)));
	if (*r->description != '\0')
		json_object_set_new(j, "description",
		    ctl_jstr(r->description));
	return j;
}

static const char *const rule_head[] = { "ID", "PRIORITY", "EFFECT",
    "SERVICE", "METHOD", "CALLER", "DESCRIPTION" };

static void
rule_row(struct ctl_table *t, const pb_rule *r)
{
	char prio[16], *caller;
	const char *sep = "";
	size_t len;
	FILE *f = open_memstream(&caller, &len);

	if (f == NULL)
		abort();
	if (*r->account != '\0') {
		fprintf(f, "account=%s", r->account);
		sep = " ";
	}
	if (*r->scope != '\0') {
		fprintf(f, "%sscope=%s", sep, r->scope);
		sep = " ";
	}
	if (r->account_type != 0)
		fprintf(f, "%stype=%s", sep, type_name(r->account_type));
	fclose(f);
	snprintf(prio, sizeof(prio), "%d", (int)r->priority);
	ctl_table_row(t, (const char *const[]){ r->id, prio,
	    r->effect == E_ALLOW ? "allow" : "deny", r->service, r->method,
	    *caller ? caller : "-", *r->description ? r->description : "-" });
	free(caller);
}

static int
rules_print(const struct ctl_run *x, const pb_rule *const *r, size_t n)
{
	struct ctl_table t = { .ncols = CTL_NELEM(rule_head) };
	json_t *all;

	if (x->g->json) {
		all = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(all, rule_json(r[i]));
		return ctl_json_print(all, 0);
	}
	ctl_table_row(&t, rule_head);
	for (size_t i = 0; i < n; i++)
		rule_row(&t, r[i]);
	ctl_table_print(&t, stdout);
	ctl_table_free(&t);
	return CTL_OK;
}

/* ---- accounts ---- */

static int
ac_list(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Auth__V1__ListAccountsRequest req =
	    PLATFORM__AUTH__V1__LIST_ACCOUNTS_REQUEST__INIT;
	struct ctl_table t = { .ncols = CTL_NELEM(account_head) };
	struct ctl_pages pg = { 0 };
	json_t *all;
	int rc;

	if ((rc = ctl_pages_fetch(x, au_call, M_PREFIX "ListAccounts",
	    &req.base, &platform__auth__v1__list_accounts_response__descriptor,
	    "accounts", PAGE_SIZE, 0, &pg)) == CTL_OK && x->g->json) {
		all = json_array();
		for (size_t i = 0; i < pg.nitems; i++)
			json_array_append_new(all, account_json(pg.items[i]));
		rc = ctl_json_print(all, 0);
	} else if (rc == CTL_OK) {
		ctl_table_row(&t, account_head);
		for (size_t i = 0; i < pg.nitems; i++)
			account_row(&t, pg.items[i]);
		ctl_table_print(&t, stdout);
		ctl_table_free(&t);
	}
	ctl_pages_free(&pg);
	return rc;
}

static int
ac_get(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Auth__V1__GetAccountRequest req =
	    PLATFORM__AUTH__V1__GET_ACCOUNT_REQUEST__INIT;
	ProtobufCMessage *m;
	int rc;

	req.id = argv[0];
	if ((rc = au_call(x, M_PREFIX "GetAccount", &req.base,
	    &platform__auth__v1__get_account_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	rc = account_print(x, ((Platform__Auth__V1__GetAccountResponse *)m)->
	    account, NULL);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* The --meta pairs as entries pointing into argv (keys malloc'd); an
 * empty value ("--meta ''") stands for no metadata. */
static int
meta_of(const struct ctl_run *x, pb_meta *e, pb_meta **p, size_t *n)
{
	const struct au_flags *f = au_f(x);
	*n = 0;
	for (size_t i = 0; i < f->meta.n; i++) {
		const char *kv = f->meta.v[i], *eq = strchr(kv, '=');

		if (*kv == '\0')
			continue;
		if (eq == NULL || eq == kv)
			return usage_error("--meta must be KEY=VALUE, not "
			    "'%s'", kv);
		platform__auth__v1__account__metadata_entry__init(&e[*n]);
		e[*n].key = xcalloc(1, (size_t)(eq - kv) + 1);
		memcpy(e[*n].key, kv, (size_t)(eq - kv));
		e[*n].value = (char *)eq + 1;
		p[*n] = &e[*n];
		(*n)++;
	}
	return 0;
}

static void
meta_free(pb_meta *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].key);
}

/* The --scope values, without the empty ones ("--scope ''": none). */
static size_t
scopes_of(const struct ctl_run *x, char **out)
{
	const struct au_flags *f = au_f(x);
	size_t n = 0;

	for (size_t i = 0; i < f->scope.n; i++)
		if (*f->scope.v[i] != '\0')
			out[n++] = (char *)f->scope.v[i];
	return n;
}

/* Prints the account of a Create/UpdateAccountResponse (same layout:
 * account, secret) and wipes the secret. */
static int
account_answer(const struct ctl_run *x, ProtobufCMessage *m)
{
	Platform__Auth__V1__CreateAccountResponse *r = (void *)m;
	int rc = account_print(x, r->account, r->secret);

	explicit_bzero(r->secret, strlen(r->secret));
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
ac_create(const struct ctl_run *x, int argc, char **argv)
{
	const struct au_flags *f = au_f(x);
	Platform__Auth__V1__CreateAccountRequest req =
	    PLATFORM__AUTH__V1__CREATE_ACCOUNT_REQUEST__INIT;
	pb_account a = PLATFORM__AUTH__V1__ACCOUNT__INIT;
	pb_meta e[CTL_LIST_MAX], *p[CTL_LIST_MAX];
	char *scopes[CTL_LIST_MAX];
	ProtobufCMessage *m;
	int rc;

	if (f->type == NULL)
		return usage_error("accounts create: --type user|service is "
		    "required");
	if ((rc = type_of(f->type, &a.type)) != 0 ||
	    (rc = meta_of(x, e, p, &a.n_metadata)) != 0)
		goto out;
	a.id = argv[0];
	a.scopes = scopes;
	a.n_scopes = scopes_of(x, scopes);
	a.metadata = p;
	req.account = &a;
	if ((rc = au_call(x, M_PREFIX "CreateAccount", &req.base,
	    &platform__auth__v1__create_account_response__descriptor, &m,
	    0)) == CTL_OK)
		rc = account_answer(x, m);
out:
	meta_free(e, a.n_metadata);
	return rc;
}

/* UpdateAccount of argv[0] with the fields in mask (NULL-ended). */
static int
ac_update_mask(const struct ctl_run *x, const char *id, pb_account *a,
    char **mask, size_t nmask)
{
	Platform__Auth__V1__UpdateAccountRequest req =
	    PLATFORM__AUTH__V1__UPDATE_ACCOUNT_REQUEST__INIT;
	ProtobufCMessage *m;
	int rc;

	a->id = (char *)id;
	req.account = a;
	req.update_mask = mask;
	req.n_update_mask = nmask;
	if ((rc = au_call(x, M_PREFIX "UpdateAccount", &req.base,
	    &platform__auth__v1__update_account_response__descriptor, &m,
	    0)) != CTL_OK)
		return rc;
	return account_answer(x, m);
}

static int
ac_update(const struct ctl_run *x, int argc, char **argv)
{
	const struct au_flags *f = au_f(x);
	pb_account a = PLATFORM__AUTH__V1__ACCOUNT__INIT;
	pb_meta e[CTL_LIST_MAX], *p[CTL_LIST_MAX];
	char *scopes[CTL_LIST_MAX], *mask[3];
	size_t nmask = 0;
	int rc;

	if (f->scope.n == 0 && f->meta.n == 0 && f->new_secret == NULL)
		return usage_error("accounts update: nothing to change "
		    "(--scope, --meta, --new-secret)");
	if ((rc = meta_of(x, e, p, &a.n_metadata)) != 0)
		goto out;
	a.metadata = p;
	a.scopes = scopes;
	a.n_scopes = scopes_of(x, scopes);
	if (f->scope.n > 0)
		mask[nmask++] = "scopes";
	if (f->meta.n > 0)
		mask[nmask++] = "metadata";
	if (f->new_secret != NULL)
		mask[nmask++] = "secret";
	rc = ac_update_mask(x, argv[0], &a, mask, nmask);
out:
	meta_free(e, a.n_metadata);
	return rc;
}

static int
ac_disable(const struct ctl_run *x, int argc, char **argv)
{
	pb_account a = PLATFORM__AUTH__V1__ACCOUNT__INIT;

	a.disabled = 1;
	return ac_update_mask(x, argv[0], &a, (char *[]){ "disabled" }, 1);
}

static int
ac_enable(const struct ctl_run *x, int argc, char **argv)
{
	pb_account a = PLATFORM__AUTH__V1__ACCOUNT__INIT;

	return ac_update_mask(x, argv[0], &a, (char *[]){ "disabled" }, 1);
}

/* DeleteAccount or DeleteRule of id: their requests hold only the id,
 * their answers nothing. */
static int
delete_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessageDescriptor *req_desc,
    const ProtobufCMessageDescriptor *desc, const char *id)
{
	ProtobufCMessage *req = xcalloc(1, req_desc->sizeof_message), *m;
	int rc;

	protobuf_c_message_init(req_desc, req);
	memcpy(ctl_field(req, "id", NULL), &id, sizeof(id));
	rc = au_call(x, method, req, desc, &m, 0);
	free(req);
	if (rc != CTL_OK)
		return rc;
	protobuf_c_message_free_unpacked(m, NULL);
	if (x->g->json)
		return ctl_json_print(json_pack("{s:o}", "deleted",
		    ctl_jstr(id)), 0);
	ctl_put_line(stdout, "deleted %s", id);
	return CTL_OK;
}

static int
ac_delete(const struct ctl_run *x, int argc, char **argv)
{
	return delete_call(x, M_PREFIX "DeleteAccount",
	    &platform__auth__v1__delete_account_request__descriptor,
	    &platform__auth__v1__delete_account_response__descriptor, argv[0]);
}

/* ---- rules ---- */

static int
ru_list(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Auth__V1__ListRulesRequest req =
	    PLATFORM__AUTH__V1__LIST_RULES_REQUEST__INIT;
	struct ctl_pages pg = { 0 };
	int rc;

	if ((rc = ctl_pages_fetch(x, au_call, M_PREFIX "ListRules", &req.base,
	    &platform__auth__v1__list_rules_response__descriptor, "rules",
	    PAGE_SIZE, 0, &pg)) == CTL_OK)
		rc = rules_print(x, (const pb_rule *const *)pg.items,
		    pg.nitems);
	ctl_pages_free(&pg);
	return rc;
}

/* --service and --method, needed by create and verify. */
static int
need_target(const struct ctl_run *x, const char *cmd)
{
	const struct au_flags *f = au_f(x);
	if (f->service == NULL || f->method == NULL)
		return usage_error("rules %s: --service and --method are "
		    "required", cmd);
	return 0;
}

static int
ru_create(const struct ctl_run *x, int argc, char **argv)
{
	const struct au_flags *f = au_f(x);
	Platform__Auth__V1__CreateRuleRequest req =
	    PLATFORM__AUTH__V1__CREATE_RULE_REQUEST__INIT;
	pb_rule r = PLATFORM__AUTH__V1__RULE__INIT;
	const pb_rule *got;
	ProtobufCMessage *m;
	char *end;
	long prio = 0;
	int rc;

	if ((rc = need_target(x, "create")) != 0 ||
	    (rc = type_of(f->type, &r.account_type)) != 0)
		return rc;
	if ((f->allow != NULL) == (f->deny != NULL))
		return usage_error("rules create: one of --allow or --deny");
	if (f->scope.n > 1)
		return usage_error("rules create: one --scope (a pattern)");
	if (f->account == NULL && f->scope.n == 0 && f->type == NULL)
		return usage_error("rules create: whose calls? --account, "
		    "--scope and/or --type");
	if (f->priority != NULL) {
		errno = 0;
		prio = strtol(f->priority, &end, 10);
		if (errno != 0 || end == f->priority || *end != '\0' ||
		    prio < INT32_MIN || prio > INT32_MAX)
			return usage_error("--priority must be a whole "
			    "number, not '%s'", f->priority);
	}
	r.service = (char *)f->service;
	r.method = (char *)f->method;
	r.account = (char *)(f->account ? f->account : "");
	r.scope = (char *)(f->scope.n ? f->scope.v[0] : "");
	r.effect = f->allow != NULL ? E_ALLOW : E_DENY;
	r.priority = (int32_t)prio;
	r.description = (char *)(f->description ? f->description : "");
	req.rule = &r;
	if ((rc = au_call(x, M_PREFIX "CreateRule", &req.base,
	    &platform__auth__v1__create_rule_response__descriptor, &m, 0)) !=
	    CTL_OK)
		return rc;
	got = ((Platform__Auth__V1__CreateRuleResponse *)m)->rule;
	rc = got != NULL ? rules_print(x, &got, 1) : CTL_OK;
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

static int
ru_delete(const struct ctl_run *x, int argc, char **argv)
{
	return delete_call(x, M_PREFIX "DeleteRule",
	    &platform__auth__v1__delete_rule_request__descriptor,
	    &platform__auth__v1__delete_rule_response__descriptor, argv[0]);
}

static int
verify_print(const struct ctl_run *x,
    const Platform__Auth__V1__VerifyResponse *r)
{
	const pb_rule *rule = r->rule;
	json_t *j;

	if (x->g->json) {
		j = json_pack("{s:b, s:o}", "allowed", (int)r->allowed,
		    "reason", ctl_jstr(r->reason));
		json_object_set_new(j, "rule", rule ? rule_json(rule) :
		    json_null());
		return ctl_json_print(j, 0);
	}
	ctl_put_line(stdout, "%s%s%s", r->allowed ? "allowed" : "denied",
	    *r->reason ? ": " : "", r->reason);
	if (rule == NULL) {
		ctl_put_line(stdout, "no rule applies: denied by default");
		return CTL_OK;
	}
	ctl_put_line(stdout, "decided by rule %s:", rule->id);
	return rules_print(x, &rule, 1);
}

static int
ru_verify(const struct ctl_run *x, int argc, char **argv)
{
	const struct au_flags *f = au_f(x);
	Platform__Auth__V1__VerifyRequest req =
	    PLATFORM__AUTH__V1__VERIFY_REQUEST__INIT;
	ProtobufCMessage *m;
	char *scopes[CTL_LIST_MAX];
	int rc;

	if ((rc = need_target(x, "verify")) != 0 ||
	    (rc = type_of(f->type, &req.account_type)) != 0)
		return rc;
	if ((f->account != NULL) == (f->scope.n > 0 || f->type != NULL))
		return usage_error("rules verify: --account A, or --scope S "
		    "(repeatable) and/or --type T");
	req.account = (char *)(f->account ? f->account : "");
	req.scopes = scopes;
	req.n_scopes = scopes_of(x, scopes);
	req.service = (char *)f->service;
	req.method = (char *)f->method;
	if ((rc = au_call(x, M_PREFIX "Verify", &req.base,
	    &platform__auth__v1__verify_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	rc = verify_print(x, (Platform__Auth__V1__VerifyResponse *)m);
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* ---- the command table ---- */

#define F(name, kind, arg, cmds, help) { "--" #name, NULL, kind, arg, NULL, \
	cmds, help, offsetof(struct au_flags, name) }

static const struct ctl_flag au_flags[] = {
	F(credentials, CTL_VALUE, "FILE", "login", "login: a service account, "
	    "with client_id and client_secret from a JSON file"),
	F(scope, CTL_LIST, "S", "login accounts.create accounts.update "
	    "rules.create rules.verify", "login: ask for this scope; "
	    "accounts: a scope of the account ('' for none); rules: the "
	    "scope matched (repeatable)"),
	F(meta, CTL_LIST, "K=V", "accounts.create accounts.update",
	    "accounts: a metadata pair; update replaces them all "
	    "(repeatable)"),
	F(type, CTL_VALUE, "user|service", "accounts.create rules.create "
	    "rules.verify", "the account type"),
	{ "--new-secret", NULL, CTL_SWITCH, NULL, NULL, "accounts.update",
	    "accounts update: generate a new secret (shown once) and end the "
	    "account's refresh tokens", offsetof(struct au_flags, new_secret) },
	F(service, CTL_VALUE, "S", "rules.create rules.verify", "rules: gRPC "
	    "service name, \"*\" any run of characters"),
	F(method, CTL_VALUE, "M", "rules.create rules.verify", "rules: method "
	    "name"),
	F(account, CTL_VALUE, "A", "rules.create rules.verify", "rules: "
	    "account id (pattern)"),
	F(allow, CTL_SWITCH, NULL, "rules.create", "rules create: the rule "
	    "allows"),
	F(deny, CTL_SWITCH, NULL, "rules.create", "rules create: the rule "
	    "denies"),
	F(priority, CTL_VALUE, "N", "rules.create", "rules create: higher "
	    "decides first (default 0)"),
	F(description, CTL_VALUE, "TEXT", "rules.create", "rules create: why"),
};

#undef F

static const struct ctl_cmd au_cmds[] = {
	{ "login", NULL, "[ID]", 0, 1, au_login,
	    "log a user in (password from stdin), or a service with "
	    "--credentials FILE", "log in to auth-srv: a user (password on "
	    "stdin), or --credentials FILE" },
	{ "logout", NULL, "", 0, 0, au_logout,
	    "revoke the stored tokens at auth-srv and forget them",
	    "revoke the stored tokens and forget them" },
	{ "token", NULL, "", 0, 0, au_token,
	    "print the access token, refreshed when it is due",
	    "print the access token every command sends, refreshed" },
	{ "accounts", NULL, "COMMAND ...", 0, 0, NULL,
	    "auth-srv accounts: list, get, create, update, disable, enable, "
	    "delete ('accounts help')" },
	{ "accounts", "list", "", 0, 0, ac_list, "every account" },
	{ "accounts", "get", "ID", 1, 1, ac_get, "one account" },
	{ "accounts", "create", "ID --type T", 1, 1, ac_create,
	    "create an account; prints its secret, only this once" },
	{ "accounts", "update", "ID", 1, 1, ac_update,
	    "change scopes (--scope), metadata (--meta) or the secret "
	    "(--new-secret)" },
	{ "accounts", "disable", "ID", 1, 1, ac_disable,
	    "refuse the account's logins and tokens" },
	{ "accounts", "enable", "ID", 1, 1, ac_enable,
	    "let a disabled account in again" },
	{ "accounts", "delete", "ID", 1, 1, ac_delete, "delete an account" },
	{ "rules", NULL, "COMMAND ...", 0, 0, NULL,
	    "access rules: list, create, delete, verify ('rules help')" },
	{ "rules", "list", "", 0, 0, ru_list,
	    "every rule, in evaluation order" },
	{ "rules", "create", "--service S --method M --allow|--deny", 0, 0,
	    ru_create, "add a rule for --account, --scope and/or --type "
	    "callers" },
	{ "rules", "delete", "ID", 1, 1, ru_delete, "delete a rule" },
	{ "rules", "verify", "--service S --method M", 0, 0, ru_verify,
	    "may --account A (or --scope S... / --type T) call it? Says which "
	    "rule decided" },
};

static int
au_check(const struct ctl_run *x)
{
	if (x->g->auth != NULL && strchr(x->g->auth, ':') == NULL)
		return usage_error("--auth must be host:port, not '%s'",
		    x->g->auth);
	return CTL_OK;
}

const struct ctl_group ctl_auth_group = {
	.hint = "accounts help",
	.head = "Usage: " PROG " login|logout|token|accounts|rules ... "
	    "[options]\n\nLog in to auth-srv and administer its accounts "
	    "and rules.\n\nCommands:\n",
	.foot = "\nauth-srv is --auth ADDR (PLATFORM_AUTH), else the "
	    "address given at login, else\nthe service \"auth\" in "
	    "discovery. The login is kept in\n$XDG_CONFIG_HOME/platform/"
	    "token.json (default ~/.config/platform/), mode 0600;\nevery "
	    PROG " command sends its token.\n"
	    "platformctl's options apply too (" PROG " --help).\n"
	    "Exit status: 0 ok, 1 a call failed, 2 bad usage.\n",
	.width = 36,
	.cmds = CTL_TABLE(au_cmds),
	.flags = CTL_TABLE(au_flags),
	.flags_size = sizeof(struct au_flags),
	.check = au_check,
};
