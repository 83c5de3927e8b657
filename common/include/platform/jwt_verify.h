/*
 * jwt_verify: checks an access token against a set of public keys, with
 * no store behind it: what auth-srv does for its own callers and what
 * every server's guard does with the keys auth-srv publishes.
 *
 * A token passes when it is a compact JWS of three base64url parts whose
 * header names a kid in the key set and exactly that key's algorithm
 * (RS256 for an RSA key, ES256 for a P-256 key: "none", HS* and any
 * other alg are refused before a key is looked at, so a public key is
 * never used as an HMAC secret), has no "crit" header, whose signature
 * verifies, and whose claims have exp in the future, nbf (when present)
 * in the past, and the expected iss and aud. Revocation is not known
 * here: auth-srv checks it on top (Inspect).
 *
 * A key set is immutable and reference counted: build a new one when the
 * keys change and swap it in; calls holding the old one finish with it.
 */
#ifndef PLATFORM_JWT_VERIFY_H
#define PLATFORM_JWT_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define JWT_TOKEN_MAX 8192      /* bytes of a token we look at */

enum jwt_status {
	JWT_OK = 0,
	JWT_MALFORMED = -1,         /* not a JWS, bad base64url or JSON */
	JWT_BAD_ALG = -2,           /* alg not the key's (none, HS256, ...) */
	JWT_UNKNOWN_KEY = -3,       /* no key with the header's kid */
	JWT_BAD_SIGNATURE = -4,
	JWT_EXPIRED = -5,
	JWT_NOT_YET_VALID = -6,
	JWT_BAD_ISSUER = -7,
	JWT_BAD_AUDIENCE = -8,
	JWT_BAD_CLAIMS = -9,        /* exp, sub or jti missing or mistyped */
};

struct jwt_keyset;

/* The usable signature keys of a JWKS document ({"keys": [...]}); keys
 * that are not (a kty we do not know, a use other than "sig") are
 * skipped. NULL with the reason in err when the document does not parse. */
struct jwt_keyset *jwt_keyset_from_jwks(const char *jwks_json, char *err,
    size_t errlen);
/* The same from a parsed JWKS. */
struct jwt_keyset *jwt_keyset_from_json(const json_t *jwks, char *err,
    size_t errlen);
struct jwt_keyset *jwt_keyset_ref(struct jwt_keyset *ks);
void jwt_keyset_unref(struct jwt_keyset *ks);     /* NULL is fine */
size_t jwt_keyset_size(const struct jwt_keyset *ks);

/* What a token must say. */
struct jwt_expect {
	const char *issuer;         /* iss must equal it; NULL: any */
	const char *audience;       /* aud (a string or an array) must hold
	                               it; NULL: any */
	int64_t now;                /* Unix seconds */
	int64_t leeway;             /* seconds of clock skew allowed */
};

/* A verified token's claims. json owns everything but scopes; the pointers
 * are into it. scopes are the words of the "scope" claim. */
struct jwt_claims {
	json_t *json;
	const char *sub;
	const char *iss;
	const char *jti;
	const char *account_type;   /* "user", "service", or NULL */
	const char **scopes;
	size_t nscopes;
	int64_t iat, nbf, exp;      /* 0 when absent (iat, nbf) */
	char kid[64];
	char alg[8];
	char *scope_buf;            /* private: holds the scopes */
};

/* JWT_OK and the claims in *out (free with jwt_claims_free), or a
 * status with a short reason in err that never quotes the token. */
enum jwt_status jwt_verify(const struct jwt_keyset *ks, const char *token,
    const struct jwt_expect *expect, struct jwt_claims *out, char *err,
    size_t errlen);
void jwt_claims_free(struct jwt_claims *c);
/* An independent copy (free both with jwt_claims_free). */
void jwt_claims_copy(struct jwt_claims *dst, const struct jwt_claims *src);

/* Whether a claims set holds a scope. */
int jwt_claims_has_scope(const struct jwt_claims *c, const char *scope);

/* The token in an "authorization" metadata value ("Bearer <token>", the
 * scheme in any case), or NULL. Points into value. */
const char *jwt_bearer(const char *value);

#endif
