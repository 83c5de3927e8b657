/*
 * jwt_verify: access token checks against a key set (see jwt_verify.h).
 *
 * Signatures are checked with OpenSSL directly, so the algorithm used is
 * the one pinned to the key, never one a token asks for.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "platform/errbuf.h"
#include "platform/jwk.h"
#include "platform/jwt_verify.h"
#include "platform/xalloc.h"

#define ES256_SIG_BYTES 64

struct jwt_key {
	char kid[64];
	const char *alg;        /* "RS256" or "ES256" */
	EVP_PKEY *pkey;
};

struct jwt_keyset {
	atomic_int refs;
	struct jwt_key *keys;
	size_t n;
};

/* ---- key sets ---- */

struct jwt_keyset *
jwt_keyset_from_json(const json_t *jwks, char *err, size_t errlen)
{
	const json_t *keys = json_object_get(jwks, "keys");
	struct jwt_keyset *ks;
	size_t i;
	json_t *jwk;

	if (!json_is_array(keys)) {
		errbuf_set(err, errlen, "not a JWKS: no \"keys\" array");
		return NULL;
	}
	ks = xcalloc(1, sizeof(*ks));
	atomic_init(&ks->refs, 1);
	ks->keys = xcalloc(json_array_size(keys), sizeof(*ks->keys));
	json_array_foreach(keys, i, jwk) {
		const char *kid = json_string_value(json_object_get(jwk,
		    "kid"));
		struct jwt_key *k = &ks->keys[ks->n];

		if (kid == NULL || kid[0] == '\0' ||
		    strlen(kid) >= sizeof(k->kid))
			continue;
		if ((k->pkey = jwk_to_pkey(jwk, &k->alg, NULL, 0)) == NULL)
			continue;
		strcpy(k->kid, kid);
		ks->n++;
	}
	return ks;
}

struct jwt_keyset *
jwt_keyset_from_jwks(const char *jwks_json, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *doc = json_loads(jwks_json, JSON_REJECT_DUPLICATES, &jerr);
	struct jwt_keyset *ks;

	if (doc == NULL) {
		errbuf_set(err, errlen, "JWKS does not parse: %s", jerr.text);
		return NULL;
	}
	ks = jwt_keyset_from_json(doc, err, errlen);
	json_decref(doc);
	return ks;
}

struct jwt_keyset *
jwt_keyset_ref(struct jwt_keyset *ks)
{
	atomic_fetch_add(&ks->refs, 1);
	return ks;
}

void
jwt_keyset_unref(struct jwt_keyset *ks)
{
	if (ks == NULL || atomic_fetch_sub(&ks->refs, 1) != 1)
		return;
	for (size_t i = 0; i < ks->n; i++)
		EVP_PKEY_free(ks->keys[i].pkey);
	free(ks->keys);
	free(ks);
}

size_t
jwt_keyset_size(const struct jwt_keyset *ks)
{
	return ks != NULL ? ks->n : 0;
}

static const struct jwt_key *
keyset_find(const struct jwt_keyset *ks, const char *kid)
{
	for (size_t i = 0; ks != NULL && i < ks->n; i++)
		if (strcmp(ks->keys[i].kid, kid) == 0)
			return &ks->keys[i];
	return NULL;
}

/* ---- signatures ---- */

/* An ES256 signature (r || s, 32 bytes each) as the DER OpenSSL takes. */
static unsigned char *
es256_der(const unsigned char *sig, size_t len, int *derlen)
{
	ECDSA_SIG *es;
	BIGNUM *r, *s;
	unsigned char *der = NULL;

	if (len != ES256_SIG_BYTES || (es = ECDSA_SIG_new()) == NULL)
		return NULL;
	r = BN_bin2bn(sig, ES256_SIG_BYTES / 2, NULL);
	s = BN_bin2bn(sig + ES256_SIG_BYTES / 2, ES256_SIG_BYTES / 2, NULL);
	if (r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return NULL;
	}
	*derlen = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	return *derlen > 0 ? der : NULL;
}

static int
signature_ok(const struct jwt_key *k, const char *input, size_t inlen,
    const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	int derlen = 0, ok = 0;

	if (md == NULL)
		return 0;
	if (strcmp(k->alg, "ES256") == 0) {
		if ((der = es256_der(sig, siglen, &derlen)) == NULL)
			goto done;
		sig = der;
		siglen = (size_t)derlen;
	}
	ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pkey) ==
	    1 && EVP_DigestVerify(md, sig, siglen,
	    (const unsigned char *)input, inlen) == 1;
done:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	return ok;
}

/* ---- parts ---- */

/* A base64url part that must be a JSON object. */
static json_t *
part_json(const char *p, size_t len)
{
	size_t n = 0;
	unsigned char *raw = jwk_b64url_decode(p, len, &n);
	json_t *v;

	if (raw == NULL)
		return NULL;
	v = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (v != NULL && !json_is_object(v)) {
		json_decref(v);
		v = NULL;
	}
	return v;
}

/* A NumericDate claim: 0 when absent, -1 when not a number. */
static int
numeric_date(const json_t *claims, const char *key, int64_t *out)
{
	json_t *v = json_object_get(claims, key);

	*out = 0;
	if (v == NULL)
		return 0;
	/* Out of range is not a date: the cast would be undefined, and
	 * exp + leeway must not overflow. */
	if (!json_is_number(v) || !(json_number_value(v) > -0x1p62 &&
	    json_number_value(v) < 0x1p62))
		return -1;
	*out = (int64_t)json_number_value(v);
	return 0;
}

static int
audience_ok(const json_t *aud, const char *want)
{
	size_t i;
	json_t *v;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), want) == 0;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), want) == 0)
			return 1;
	return 0;
}

/* The words of the scope claim, in a copy of it split in place. */
static void
split_scopes(struct jwt_claims *c)
{
	const char *s = json_string_value(json_object_get(c->json, "scope"));
	char *p;
	size_t max;

	c->scope_buf = p = xstrdup(s);
	max = strlen(p) / 2 + 1;
	c->scopes = xcalloc(max + 1, sizeof(char *));
	while (*(p += strspn(p, " ")) != '\0') {
		c->scopes[c->nscopes++] = p;
		p += strcspn(p, " ");
		if (*p != '\0')
			*p++ = '\0';
	}
}

static enum jwt_status
check_claims(struct jwt_claims *c, const struct jwt_expect *e, char *err,
    size_t errlen)
{
	json_t *j = c->json;

	c->sub = json_string_value(json_object_get(j, "sub"));
	c->iss = json_string_value(json_object_get(j, "iss"));
	c->jti = json_string_value(json_object_get(j, "jti"));
	c->account_type = json_string_value(json_object_get(j,
	    "account_type"));
	if (numeric_date(j, "exp", &c->exp) != 0 || c->exp == 0 ||
	    numeric_date(j, "nbf", &c->nbf) != 0 ||
	    numeric_date(j, "iat", &c->iat) != 0 || c->sub == NULL ||
	    c->jti == NULL) {
		errbuf_set(err, errlen, "token claims lack exp, sub or jti");
		return JWT_BAD_CLAIMS;
	}
	if (e->now >= c->exp + e->leeway) {
		errbuf_set(err, errlen, "token expired");
		return JWT_EXPIRED;
	}
	if (c->nbf != 0 && e->now + e->leeway < c->nbf) {
		errbuf_set(err, errlen, "token not yet valid");
		return JWT_NOT_YET_VALID;
	}
	if (e->issuer != NULL && (c->iss == NULL ||
	    strcmp(c->iss, e->issuer) != 0)) {
		errbuf_set(err, errlen, "token issuer not accepted");
		return JWT_BAD_ISSUER;
	}
	if (e->audience != NULL &&
	    !audience_ok(json_object_get(j, "aud"), e->audience)) {
		errbuf_set(err, errlen, "token audience not accepted");
		return JWT_BAD_AUDIENCE;
	}
	split_scopes(c);
	return JWT_OK;
}

enum jwt_status
jwt_verify(const struct jwt_keyset *ks, const char *token,
    const struct jwt_expect *expect, struct jwt_claims *out, char *err,
    size_t errlen)
{
	const char *dot1, *dot2, *alg, *kid;
	const struct jwt_key *key;
	unsigned char *sig = NULL;
	json_t *header = NULL;
	size_t len, siglen = 0;
	enum jwt_status st;

	memset(out, 0, sizeof(*out));
	len = strnlen(token, JWT_TOKEN_MAX + 1);
	if (len > JWT_TOKEN_MAX || (dot1 = strchr(token, '.')) == NULL ||
	    (dot2 = strchr(dot1 + 1, '.')) == NULL ||
	    strchr(dot2 + 1, '.') != NULL) {
		errbuf_set(err, errlen, "token is not a signed JWT");
		return JWT_MALFORMED;
	}
	if ((header = part_json(token, (size_t)(dot1 - token))) == NULL) {
		errbuf_set(err, errlen, "token header does not parse");
		return JWT_MALFORMED;
	}
	alg = json_string_value(json_object_get(header, "alg"));
	kid = json_string_value(json_object_get(header, "kid"));
	if (alg == NULL || (strcmp(alg, "RS256") != 0 &&
	    strcmp(alg, "ES256") != 0)) {
		errbuf_set(err, errlen, "token algorithm not accepted");
		st = JWT_BAD_ALG;
		goto done;
	}
	if (json_object_get(header, "crit") != NULL) {
		errbuf_set(err, errlen, "token has critical headers");
		st = JWT_MALFORMED;
		goto done;
	}
	if (kid == NULL || (key = keyset_find(ks, kid)) == NULL) {
		errbuf_set(err, errlen, "token signed by an unknown key");
		st = JWT_UNKNOWN_KEY;
		goto done;
	}
	if (strcmp(alg, key->alg) != 0) {
		errbuf_set(err, errlen, "token algorithm does not fit its key");
		st = JWT_BAD_ALG;
		goto done;
	}
	sig = jwk_b64url_decode(dot2 + 1, len - (size_t)(dot2 + 1 - token),
	    &siglen);
	if (sig == NULL || !signature_ok(key, token, (size_t)(dot2 - token),
	    sig, siglen)) {
		errbuf_set(err, errlen, "token signature does not verify");
		st = JWT_BAD_SIGNATURE;
		goto done;
	}
	if ((out->json = part_json(dot1 + 1, (size_t)(dot2 - dot1 - 1))) ==
	    NULL) {
		errbuf_set(err, errlen, "token claims do not parse");
		st = JWT_MALFORMED;
		goto done;
	}
	snprintf(out->kid, sizeof(out->kid), "%s", kid);
	snprintf(out->alg, sizeof(out->alg), "%s", alg);
	st = check_claims(out, expect, err, errlen);
done:
	free(sig);
	json_decref(header);
	if (st != JWT_OK)
		jwt_claims_free(out);
	return st;
}

void
jwt_claims_free(struct jwt_claims *c)
{
	free(c->scopes);
	free(c->scope_buf);
	json_decref(c->json);
	memset(c, 0, sizeof(*c));
}

void
jwt_claims_copy(struct jwt_claims *dst, const struct jwt_claims *src)
{
	*dst = *src;            /* sub, iss, ... point into the shared json */
	json_incref(src->json);
	dst->scopes = NULL;
	dst->scope_buf = NULL;
	dst->nscopes = 0;
	if (src->scope_buf != NULL) {
		/* No string "scope" claim left scope_buf "" (split_scopes). */
		const char *scope = json_string_value(json_object_get(
		    src->json, "scope"));
		size_t len = (scope != NULL ? strlen(scope) : 0) + 1;

		/* The same words at the same offsets in a buffer of our own. */
		dst->scope_buf = xcalloc(1, len);
		memcpy(dst->scope_buf, src->scope_buf, len);
		dst->scopes = xcalloc(src->nscopes + 1, sizeof(char *));
		for (size_t i = 0; i < src->nscopes; i++)
			dst->scopes[i] = dst->scope_buf +
			    (src->scopes[i] - src->scope_buf);
		dst->nscopes = src->nscopes;
	}
}

int
jwt_claims_has_scope(const struct jwt_claims *c, const char *scope)
{
	for (size_t i = 0; i < c->nscopes; i++)
		if (strcmp(c->scopes[i], scope) == 0)
			return 1;
	return 0;
}

const char *
jwt_bearer(const char *value)
{
	if (value == NULL || strncasecmp(value, "Bearer ", 7) != 0)
		return NULL;
	value += 7;
	value += strspn(value, " ");
	return value[0] != '\0' ? value : NULL;
}
