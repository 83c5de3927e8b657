/*
 * identity: this server's service identity and its access tokens. See
 * platform/identity.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "platform/auth/v1/auth.pb-c.h"
#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/identity.h"
#include "platform/jwt_verify.h"
#include "platform/log.h"
#include "platform/xalloc.h"

#define M_TOKEN "/platform.auth.v1.Auth/Token"
#define IDENTITY_DEADLINE_MS 3000
/* After a failed Token call, calls go without a token for this long
 * instead of each waiting for auth-srv. */
#define IDENTITY_RETRY_MS 1000
#define CREDENTIALS_FILE_MAX 65536

struct plat_identity {
	pthread_mutex_t mu;
	plat_client *client;             /* no token of its own */
	char *auth;
	struct plat_credentials creds;
	char token[JWT_TOKEN_MAX + 1];   /* "" when none */
	int64_t renew_at_ms;
	int64_t expires_at_ms;
	int64_t failed_at_ms;            /* last failure; 0 none */
	int failing;                     /* logged, until a success */
};

/* ---- credentials ---- */

static void
secret_wipe_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

void
plat_credentials_free(struct plat_credentials *c)
{
	if (c == NULL)
		return;
	free(c->client_id);
	secret_wipe_free(c->client_secret);
	c->client_id = c->client_secret = NULL;
}

int
plat_credentials_parse(const char *json, struct plat_credentials *out,
    char *err, size_t errlen)
{
	json_t *doc;
	const char *id, *secret;

	memset(out, 0, sizeof(*out));
	/* jansson's error text may quote the input: not used. */
	if ((doc = json_loads(json, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    !json_is_object(doc)) {
		json_decref(doc);
		errbuf_set(err, errlen, "not a JSON object");
		return -1;
	}
	id = json_string_value(json_object_get(doc, "client_id"));
	secret = json_string_value(json_object_get(doc, "client_secret"));
	if (id == NULL || id[0] == '\0' || secret == NULL ||
	    secret[0] == '\0') {
		json_decref(doc);
		errbuf_set(err, errlen, "needs the strings client_id and "
		    "client_secret");
		return -1;
	}
	out->client_id = xstrdup(id);
	out->client_secret = xstrdup(secret);
	/* jansson's copy of the secret goes with the document. */
	explicit_bzero((char *)secret, strlen(secret));
	json_decref(doc);
	return 0;
}

static int
credentials_read(const char *file, struct plat_credentials *out, char *err,
    size_t errlen)
{
	char buf[CREDENTIALS_FILE_MAX + 1], why[256];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd, rc;

	if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0 ||
	    fstat(fd, &st) != 0) {
		errbuf_set(err, errlen, "--credentials: cannot read \"%s\": %s",
		    file, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		close(fd);
		errbuf_set(err, errlen, "--credentials: \"%s\" may be read by "
		    "group or others (mode %03o): chmod 600 it", file,
		    (unsigned)(st.st_mode & 0777));
		return -1;
	}
	while (len < CREDENTIALS_FILE_MAX &&
	    (n = read(fd, buf + len, CREDENTIALS_FILE_MAX - len)) > 0)
		len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	rc = plat_credentials_parse(buf, out, why, sizeof(why));
	explicit_bzero(buf, sizeof(buf));
	if (rc != 0)
		errbuf_set(err, errlen, "--credentials: \"%s\": %s", file, why);
	return rc;
}

int
plat_credentials_load(const char *file, struct plat_credentials *out,
    char *err, size_t errlen)
{
	const char *id = getenv(IDENTITY_ENV_ID);
	const char *secret = getenv(IDENTITY_ENV_SECRET);

	memset(out, 0, sizeof(*out));
	if (file != NULL && file[0] != '\0')
		return credentials_read(file, out, err, errlen) == 0 ? 1 : -1;
	if ((id == NULL || id[0] == '\0') && (secret == NULL ||
	    secret[0] == '\0'))
		return 0;
	if (id == NULL || id[0] == '\0' || secret == NULL ||
	    secret[0] == '\0') {
		errbuf_set(err, errlen, "%s: given without %s", id != NULL &&
		    id[0] != '\0' ? IDENTITY_ENV_ID : IDENTITY_ENV_SECRET,
		    id != NULL && id[0] != '\0' ? IDENTITY_ENV_SECRET :
		    IDENTITY_ENV_ID);
		return -1;
	}
	out->client_id = xstrdup(id);
	out->client_secret = xstrdup(secret);
	return 1;
}

/* ---- tokens ---- */

int64_t
plat_identity_renew_at(int64_t now_ms, int64_t expires_in_s)
{
	int64_t life = expires_in_s > 0 ? expires_in_s * 1000 : 0;

	return now_ms + (life * 2 / 3 > 1000 ? life * 2 / 3 : 1000);
}

struct plat_identity *
plat_identity_new(const char *auth_addr, struct plat_credentials *creds,
    const struct plat_client_opts *tls)
{
	struct plat_client_opts co = {
		.tls_ca = tls != NULL ? tls->tls_ca : NULL,
		.tls_cert = tls != NULL ? tls->tls_cert : NULL,
		.tls_key = tls != NULL ? tls->tls_key : NULL,
		.default_deadline_ms = IDENTITY_DEADLINE_MS,
	};
	struct plat_identity *id;
	plat_client *c;

	if ((c = plat_client_new(&co)) == NULL)
		return NULL;
	id = xcalloc(1, sizeof(*id));
	pthread_mutex_init(&id->mu, NULL);
	id->client = c;
	id->auth = xstrdup(auth_addr);
	id->creds = *creds;
	memset(creds, 0, sizeof(*creds));
	return id;
}

void
plat_identity_free(struct plat_identity *id)
{
	if (id == NULL)
		return;
	plat_client_free(id->client);
	plat_credentials_free(&id->creds);
	explicit_bzero(id->token, sizeof(id->token));
	free(id->auth);
	pthread_mutex_destroy(&id->mu);
	free(id);
}

const char *
plat_identity_client_id(const struct plat_identity *id)
{
	return id->creds.client_id;
}

/* Asks auth-srv for a new token; mu held. */
static int
identity_fetch_locked(struct plat_identity *id, int64_t now)
{
	Platform__Auth__V1__TokenRequest req =
	    PLATFORM__AUTH__V1__TOKEN_REQUEST__INIT;
	Platform__Auth__V1__TokenResponse *resp;
	ProtobufCMessage *m = NULL;
	char err[256];
	int rc;

	req.grant_type = "client_credentials";
	req.client_id = id->creds.client_id;
	req.client_secret = id->creds.client_secret;
	rc = plat_client_call_addr(id->client, id->auth, M_TOKEN, &req.base,
	    &platform__auth__v1__token_response__descriptor, &m, NULL, err,
	    sizeof(err));
	resp = (Platform__Auth__V1__TokenResponse *)m;
	if (rc == 0 && (strlen(resp->access_token) == 0 ||
	    strlen(resp->access_token) > JWT_TOKEN_MAX)) {
		rc = 13;        /* INTERNAL */
		snprintf(err, sizeof(err), "no usable access_token");
	}
	if (rc != 0) {
		id->failed_at_ms = now;
		if (!id->failing)
			log_warn("identity: cannot get an access token; calls "
			    "to other servers go without one", "client_id",
			    id->creds.client_id, "auth", id->auth, "status",
			    plat_status_name(rc), "message", err);
		id->failing = 1;
		if (m != NULL)
			protobuf_c_message_free_unpacked(m, NULL);
		return -1;
	}
	snprintf(id->token, sizeof(id->token), "%s", resp->access_token);
	id->renew_at_ms = plat_identity_renew_at(now, resp->expires_in);
	id->expires_at_ms = now + resp->expires_in * 1000;
	if (id->failing)
		log_info("identity: access tokens again", "client_id",
		    id->creds.client_id);
	else
		log_debug("identity: new access token", "client_id",
		    id->creds.client_id);
	id->failing = 0;
	id->failed_at_ms = 0;
	explicit_bzero(resp->access_token, strlen(resp->access_token));
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

int
plat_identity_token(void *arg, char *buf, size_t len)
{
	struct plat_identity *id = arg;
	int64_t now = plat_now_ms();
	int rc = -1;

	pthread_mutex_lock(&id->mu);
	if ((id->token[0] == '\0' || now >= id->renew_at_ms) &&
	    (id->failed_at_ms == 0 ||
	    now - id->failed_at_ms >= IDENTITY_RETRY_MS))
		(void)identity_fetch_locked(id, now);
	/* A token past its renewal whose renewal failed is still good
	 * until it expires. */
	if (id->token[0] != '\0' && now < id->expires_at_ms &&
	    strlen(id->token) < len) {
		memcpy(buf, id->token, strlen(id->token) + 1);
		rc = 0;
	}
	pthread_mutex_unlock(&id->mu);
	return rc;
}

void
plat_identity_rejected(void *arg)
{
	struct plat_identity *id = arg;

	pthread_mutex_lock(&id->mu);
	id->renew_at_ms = 0;
	pthread_mutex_unlock(&id->mu);
}
