/*
 * tokens: the token endpoint (RFC 6749 grants), introspection (RFC
 * 7662), revocation (RFC 7009) and the published keys (RFC 7517).
 *
 * Nothing here logs or returns a secret, a token or a hash: status
 * messages name the field or the reason, never the value.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "lockout.h"
#include "platform/clock.h"
#include "platform/log.h"
#include "secret.h"

#define JTI_BYTES 16
#define REFRESH_BYTES 32
#define BAD_CREDENTIALS "invalid client credentials"

typedef Platform__Auth__V1__TokenRequest TokenRequest;
typedef Platform__Auth__V1__TokenResponse TokenResponse;

static const char *
type_name(int type)
{
	return type == RULE_SERVICE ? "service" : "user";
}

static int
type_of(const char *name)
{
	if (name == NULL)
		return RULE_ANY_TYPE;
	if (strcmp(name, "service") == 0)
		return RULE_SERVICE;
	if (strcmp(name, "user") == 0)
		return RULE_USER;
	return RULE_ANY_TYPE;
}

static int
check_secret_field(plat_ctx *ctx, const char *field, const char *v)
{
	if (v[0] == '\0')
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: required",
		    field);
	if (strlen(v) > AUTH_SECRET_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "%s: longer than "
		    "%d bytes", field, AUTH_SECRET_MAX);
	return PLAT_OK;
}

/* The scopes to grant: the asked ones, each held in `held`, or all of
 * held when none is asked; space-separated in the arena. */
static int
grant_scopes(plat_ctx *ctx, const char *asked, const char *held,
    char **out)
{
	size_t na, nh, len = 0;
	char **a = auth_words(ctx, asked, &na);
	char **h = auth_words(ctx, held, &nh);
	char *s;
	int rc;

	if (na == 0) {
		*out = plat_strdup(ctx, held);
		return PLAT_OK;
	}
	for (size_t i = 0; i < na; i++) {
		bool found = false;

		if ((rc = auth_check_scope(ctx, "scope", a[i])) != PLAT_OK)
			return rc;
		for (size_t j = 0; j < nh && !found; j++)
			found = strcmp(a[i], h[j]) == 0;
		if (!found)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "scope: "
			    "\"%s\" is not granted to this account", a[i]);
		len += strlen(a[i]) + 1;
	}
	s = *out = plat_alloc(ctx, len + 1);
	for (size_t i = 0; i < na; i++) {
		bool dup = false;

		for (size_t j = 0; j < i && !dup; j++)
			dup = strcmp(a[i], a[j]) == 0;
		if (!dup)
			s += sprintf(s, "%s%s", s == *out ? "" : " ", a[i]);
	}
	return PLAT_OK;
}

/* Signs an access token for acct with scopes into resp. */
static int
issue_access(plat_ctx *ctx, const struct account *acct, const char *scopes,
    TokenResponse *resp)
{
	int64_t now = plat_wall_ms() / 1000;
	char *jti = secret_random(JTI_BYTES), *token;
	json_t *claims;

	if (jti == NULL)
		return plat_error(ctx, PLAT_INTERNAL, "no randomness");
	claims = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, "
	    "s:s}", "iss", A.set.issuer, "sub", acct->id, "aud",
	    A.set.audience, "jti", jti, "scope", scopes, "iat", (json_int_t)now,
	    "nbf", (json_int_t)now, "exp",
	    (json_int_t)(now + A.set.token_ttl_s), "account_type",
	    type_name(acct->type), "client_id", acct->id);
	free(jti);
	token = claims != NULL ? keys_sign(A.keys, claims) : NULL;
	json_decref(claims);
	if (token == NULL)
		return plat_error(ctx, PLAT_UNAVAILABLE, "no signing key "
		    "loaded yet (database unavailable)");
	resp->access_token = plat_strdup(ctx, token);
	free(token);
	resp->token_type = "Bearer";
	resp->expires_in = A.set.token_ttl_s;
	resp->scope = plat_strdup(ctx, scopes);
	return PLAT_OK;
}

/* A new refresh token of family (a new family for NULL) into resp, and
 * its grant for the store (strings in the arena). */
static int
new_refresh(plat_ctx *ctx, const char *account, const char *scopes,
    const char *family, TokenResponse *resp, struct refresh_grant *g)
{
	char *token = secret_random(REFRESH_BYTES), *fam = NULL;
	char *hash = plat_alloc(ctx, SECRET_SHA256_HEX);

	if (token == NULL || (family == NULL &&
	    (fam = secret_random(JTI_BYTES)) == NULL)) {
		secret_free(token);
		return plat_error(ctx, PLAT_INTERNAL, "no randomness");
	}
	secret_sha256_hex(token, hash);
	resp->refresh_token = plat_strdup(ctx, token);
	secret_free(token);
	*g = (struct refresh_grant){
		.hash = hash,
		.family = family != NULL ? family : plat_strdup(ctx, fam),
		.account = account,
		.scopes = scopes,
		.expires_ms = plat_wall_ms() + A.set.refresh_ttl_s * 1000,
	};
	free(fam);
	return PLAT_OK;
}

/* client_credentials and password: check the credentials of an account
 * of `type`; answers a failure itself (lockout) and returns its code. */
static int
login(plat_ctx *ctx, const char *id_field, const char *id,
    const char *secret_field, const char *secret, int type,
    struct account **out)
{
	const char *peer = lockout_peer_host(ctx);
	struct account *acct = NULL;
	char err[256];
	enum plat_code code;
	int64_t left;
	bool ok;
	int rc;

	*out = NULL;
	if ((rc = auth_check_id(ctx, id_field, id)) != PLAT_OK ||
	    (rc = check_secret_field(ctx, secret_field, secret)) != PLAT_OK)
		return rc;
	if ((left = lockout_blocked(id, peer)) > 0)
		return plat_error(ctx, PLAT_RESOURCE_EXHAUSTED, "too many "
		    "failed logins; try again in %" PRId64 " s",
		    (left + 999) / 1000);
	code = store_account_get(A.store, id, plat_ctx_deadline_left_ms(ctx),
	    &acct, err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	ok = acct != NULL ? secret_verify(acct->secret_hash, secret) :
	    secret_verify_none(secret);
	if (!ok) {
		account_free(acct);
		plat_error(ctx, PLAT_UNAUTHENTICATED, BAD_CREDENTIALS);
		return lockout_fail(ctx, PLAT_UNAUTHENTICATED, id, peer);
	}
	lockout_succeeded(id);
	if (acct->disabled) {
		account_free(acct);
		return plat_error(ctx, PLAT_PERMISSION_DENIED, "account is "
		    "disabled");
	}
	if (acct->type != type) {
		account_free(acct);
		return plat_error(ctx, PLAT_PERMISSION_DENIED, "grant_type: "
		    "%s is for %s accounts", type == RULE_SERVICE ?
		    "client_credentials" : "password", type_name(type));
	}
	*out = acct;
	return PLAT_OK;
}

static int
grant_client_credentials(plat_ctx *ctx, const TokenRequest *req,
    TokenResponse *resp)
{
	struct account *acct;
	char *scopes;
	int rc;

	if ((rc = login(ctx, "client_id", req->client_id, "client_secret",
	    req->client_secret, RULE_SERVICE, &acct)) != PLAT_OK)
		return rc;
	rc = grant_scopes(ctx, req->scope, acct->scopes, &scopes);
	if (rc == PLAT_OK)
		rc = issue_access(ctx, acct, scopes, resp);
	account_free(acct);
	return rc;
}

static int
grant_password(plat_ctx *ctx, const TokenRequest *req, TokenResponse *resp)
{
	struct refresh_grant g;
	struct account *acct;
	char err[256], *scopes;
	enum plat_code code;
	int rc;

	if ((rc = login(ctx, "username", req->username, "password",
	    req->password, RULE_USER, &acct)) != PLAT_OK)
		return rc;
	rc = grant_scopes(ctx, req->scope, acct->scopes, &scopes);
	if (rc == PLAT_OK)
		rc = issue_access(ctx, acct, scopes, resp);
	if (rc == PLAT_OK)
		rc = new_refresh(ctx, acct->id, scopes, NULL, resp, &g);
	if (rc == PLAT_OK) {
		code = store_refresh_insert(A.store, &g,
		    plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
		if (code != PLAT_OK)
			rc = auth_store_error(ctx, code, err);
	}
	account_free(acct);
	return rc;
}

/* The scopes of a refreshed grant: what the grant had and the account
 * still holds, narrowed to the asked ones. */
static int
refresh_scopes(plat_ctx *ctx, const char *asked, const char *granted,
    const char *held, char **out)
{
	size_t ng, nh, len = 0;
	char **g = auth_words(ctx, granted, &ng);
	char **h = auth_words(ctx, held, &nh);
	char *both = plat_alloc(ctx, strlen(granted) + 1), *p = both;

	for (size_t i = 0; i < ng; i++)
		for (size_t j = 0; j < nh; j++)
			if (strcmp(g[i], h[j]) == 0) {
				p += sprintf(p, "%s%s", len++ ? " " : "",
				    g[i]);
				break;
			}
	return grant_scopes(ctx, asked, both, out);
}

static int
grant_refresh(plat_ctx *ctx, const TokenRequest *req, TokenResponse *resp)
{
	struct refresh_grant next;
	enum refresh_outcome outcome;
	struct account *acct = NULL;
	char hash[SECRET_SHA256_HEX], err[256], *granted = NULL, *scopes;
	enum plat_code code;
	int rc;

	if ((rc = check_secret_field(ctx, "refresh_token",
	    req->refresh_token)) != PLAT_OK)
		return rc;
	secret_sha256_hex(req->refresh_token, hash);
	/* The successor is made first, so that using the token and storing
	 * the next one are one transaction. */
	if ((rc = new_refresh(ctx, "", "", "", resp, &next)) != PLAT_OK)
		return rc;
	code = store_refresh_use(A.store, hash, &next, plat_wall_ms(),
	    plat_ctx_deadline_left_ms(ctx), &outcome, &acct, &granted, err,
	    sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	if (outcome == REFRESH_REUSED)
		log_warn("auth: a used refresh token came back; its whole "
		    "grant is revoked", "peer", lockout_peer_host(ctx));
	if (outcome != REFRESH_OK)
		return plat_error(ctx, PLAT_UNAUTHENTICATED, "invalid refresh "
		    "token");
	rc = refresh_scopes(ctx, req->scope, granted, acct->scopes, &scopes);
	if (rc == PLAT_OK)
		rc = issue_access(ctx, acct, scopes, resp);
	account_free(acct);
	free(granted);
	return rc;
}

int
auth_token(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const TokenRequest *req = (const void *)msg;
	TokenResponse *out = plat_new(ctx, TokenResponse,
	    &platform__auth__v1__token_response__descriptor);
	const char *gt = req->grant_type;
	int rc;

	if (gt[0] == '\0')
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "grant_type: "
		    "required (client_credentials, password or "
		    "refresh_token)");
	if (strlen(req->scope) > AUTH_SCOPES_MAX * (AUTH_SCOPE_MAX + 1))
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "scope: too long");
	if (strcmp(gt, "client_credentials") == 0)
		rc = grant_client_credentials(ctx, req, out);
	else if (strcmp(gt, "password") == 0)
		rc = grant_password(ctx, req, out);
	else if (strcmp(gt, "refresh_token") == 0)
		rc = grant_refresh(ctx, req, out);
	else
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "grant_type: "
		    "unsupported (client_credentials, password or "
		    "refresh_token)");
	if (rc == PLAT_OK)
		*resp = &out->base;
	return rc;
}

/* ---- Inspect ---- */

static int
check_token_field(plat_ctx *ctx, const char *token, const char *hint)
{
	if (token[0] == '\0')
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "token: required");
	if (strlen(token) > JWT_TOKEN_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "token: longer "
		    "than %d bytes", JWT_TOKEN_MAX);
	if (hint[0] != '\0' && strcmp(hint, "access_token") != 0 &&
	    strcmp(hint, "refresh_token") != 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "token_type_hint: "
		    "access_token, refresh_token or empty");
	return PLAT_OK;
}

/* Access tokens are JWTs (with dots); refresh tokens are base64url. */
static bool
is_jwt(const char *token)
{
	return strchr(token, '.') != NULL;
}

static void
inspect_access(plat_ctx *ctx, const struct jwt_claims *c,
    Platform__Auth__V1__InspectResponse *out)
{
	json_t *aud = json_object_get(c->json, "aud"), *v;
	size_t i;

	out->active = true;
	out->token_type = "access_token";
	out->sub = plat_strdup(ctx, c->sub);
	out->account_type = (Platform__Auth__V1__AccountType)type_of(
	    c->account_type);
	out->scopes = plat_alloc(ctx, (c->nscopes + 1) * sizeof(char *));
	for (i = 0; i < c->nscopes; i++)
		out->scopes[out->n_scopes++] = plat_strdup(ctx, c->scopes[i]);
	out->iss = plat_strdup(ctx, c->iss != NULL ? c->iss : "");
	out->aud = plat_alloc(ctx, (json_array_size(aud) + 2) *
	    sizeof(char *));
	if (json_is_string(aud))
		out->aud[out->n_aud++] = plat_strdup(ctx,
		    json_string_value(aud));
	json_array_foreach(aud, i, v)
		if (json_is_string(v))
			out->aud[out->n_aud++] = plat_strdup(ctx,
			    json_string_value(v));
	out->jti = plat_strdup(ctx, c->jti);
	out->iat = c->iat;
	out->nbf = c->nbf;
	out->exp = c->exp;
	out->kid = plat_strdup(ctx, c->kid);
}

static int
inspect_refresh(plat_ctx *ctx, const char *token,
    Platform__Auth__V1__InspectResponse *out)
{
	char hash[SECRET_SHA256_HEX], err[256], *scopes;
	struct account *acct;
	int64_t created = 0, expires = 0;
	enum plat_code code;

	secret_sha256_hex(token, hash);
	code = store_refresh_inspect(A.store, hash, plat_wall_ms(),
	    plat_ctx_deadline_left_ms(ctx), &acct, &scopes, &created,
	    &expires, err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	if (acct == NULL)
		return PLAT_OK;
	out->active = true;
	out->token_type = "refresh_token";
	out->sub = plat_strdup(ctx, acct->id);
	out->account_type = (Platform__Auth__V1__AccountType)acct->type;
	out->scopes = auth_words(ctx, scopes, &out->n_scopes);
	out->iss = (char *)A.set.issuer;
	out->iat = created / 1000;
	out->exp = expires / 1000;
	account_free(acct);
	free(scopes);
	return PLAT_OK;
}

int
auth_inspect(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__InspectRequest *req = (const void *)msg;
	Platform__Auth__V1__InspectResponse *out = plat_new(ctx,
	    Platform__Auth__V1__InspectResponse,
	    &platform__auth__v1__inspect_response__descriptor);
	struct jwt_claims caller, c;
	char err[256];
	int rc;

	if ((rc = check_token_field(ctx, req->token, req->token_type_hint)) !=
	    PLAT_OK || (rc = auth_caller(ctx, false, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	if (!is_jwt(req->token)) {
		if ((rc = inspect_refresh(ctx, req->token, out)) != PLAT_OK)
			return rc;
	} else {
		rc = auth_token_active(ctx, req->token, &c, err, sizeof(err));
		if (rc == PLAT_OK) {
			inspect_access(ctx, &c, out);
			jwt_claims_free(&c);
		} else if (rc != PLAT_UNAUTHENTICATED) {
			return rc;
		}
	}
	*resp = &out->base;
	return PLAT_OK;
}

/* ---- Revoke ---- */

static int
revoke_access(plat_ctx *ctx, const struct jwt_claims *caller,
    const char *token)
{
	struct jwt_keyset *ks = keys_keyset(A.keys);
	struct jwt_expect expect = {
		.issuer = A.set.issuer,
		.now = plat_wall_ms() / 1000,
	};
	struct jwt_claims c;
	char err[256];
	enum plat_code code;
	int rc = PLAT_OK;

	/* Only a token of ours that is still alive needs revoking. */
	if (ks == NULL || jwt_verify(ks, token, &expect, &c, err,
	    sizeof(err)) != JWT_OK) {
		jwt_keyset_unref(ks);
		return PLAT_OK;
	}
	jwt_keyset_unref(ks);
	if (strcmp(c.sub, caller->sub) != 0 &&
	    !jwt_claims_has_scope(caller, AUTH_ADMIN_SCOPE))
		rc = plat_error(ctx, PLAT_PERMISSION_DENIED, "token: not "
		    "yours to revoke");
	else if ((code = store_revoke_jti(A.store, c.jti, c.exp * 1000,
	    plat_ctx_deadline_left_ms(ctx), err, sizeof(err))) != PLAT_OK)
		rc = auth_store_error(ctx, code, err);
	jwt_claims_free(&c);
	return rc;
}

static int
revoke_refresh(plat_ctx *ctx, const struct jwt_claims *caller,
    const char *token)
{
	char hash[SECRET_SHA256_HEX], err[256];
	bool admin = jwt_claims_has_scope(caller, AUTH_ADMIN_SCOPE);
	bool found, owned;
	enum plat_code code;

	secret_sha256_hex(token, hash);
	code = store_refresh_revoke(A.store, hash, admin ? NULL : caller->sub,
	    plat_ctx_deadline_left_ms(ctx), &found, &owned, err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	if (found && !owned)
		return plat_error(ctx, PLAT_PERMISSION_DENIED, "token: not "
		    "yours to revoke");
	return PLAT_OK;
}

int
auth_revoke(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__RevokeRequest *req = (const void *)msg;
	struct jwt_claims caller;
	int rc;

	if ((rc = check_token_field(ctx, req->token, req->token_type_hint)) !=
	    PLAT_OK || (rc = auth_caller(ctx, false, &caller)) != PLAT_OK)
		return rc;
	rc = is_jwt(req->token) ? revoke_access(ctx, &caller, req->token) :
	    revoke_refresh(ctx, &caller, req->token);
	jwt_claims_free(&caller);
	if (rc == PLAT_OK)
		*resp = plat_new_message(ctx,
		    &platform__auth__v1__revoke_response__descriptor);
	return rc;
}

/* ---- PublicKeys ---- */

static char *
member(plat_ctx *ctx, const json_t *jwk, const char *key)
{
	const char *v = json_string_value(json_object_get(jwk, key));

	return plat_strdup(ctx, v != NULL ? v : "");
}

int
auth_public_keys(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	Platform__Auth__V1__PublicKeysResponse *out = plat_new(ctx,
	    Platform__Auth__V1__PublicKeysResponse,
	    &platform__auth__v1__public_keys_response__descriptor);
	json_t *jwks = keys_jwks(A.keys), *keys, *jwk;
	char *text;
	size_t i;

	(void)msg;
	if (jwks == NULL)
		return plat_error(ctx, PLAT_UNAVAILABLE, "signing keys not "
		    "loaded yet (database unavailable)");
	keys = json_object_get(jwks, "keys");
	out->keys = plat_alloc(ctx, (json_array_size(keys) + 1) *
	    sizeof(*out->keys));
	json_array_foreach(keys, i, jwk) {
		Platform__Auth__V1__Jwk *k = plat_alloc(ctx, sizeof(*k));

		platform__auth__v1__jwk__init(k);
		k->kty = member(ctx, jwk, "kty");
		k->kid = member(ctx, jwk, "kid");
		k->use = member(ctx, jwk, "use");
		k->alg = member(ctx, jwk, "alg");
		k->n = member(ctx, jwk, "n");
		k->e = member(ctx, jwk, "e");
		k->crv = member(ctx, jwk, "crv");
		k->x = member(ctx, jwk, "x");
		k->y = member(ctx, jwk, "y");
		out->keys[out->n_keys++] = k;
	}
	text = json_dumps(jwks, JSON_COMPACT);
	out->jwks_json = plat_strdup(ctx, text != NULL ? text : "");
	free(text);
	json_decref(jwks);
	*resp = &out->base;
	return PLAT_OK;
}
