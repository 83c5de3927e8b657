/*
 * jwk: public keys as JSON Web Keys, through OpenSSL 3 (see jwk.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>

#include "platform/errbuf.h"
#include "platform/jwk.h"
#include "platform/xalloc.h"

#define RSA_MIN_BITS 2048
#define P256_BYTES 32

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *
jwk_b64url_encode(const void *in, size_t n)
{
	const unsigned char *p = in;
	char *out = xcalloc(1, (n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
		    p[i + 2];

		*o++ = b64url[v >> 18];
		*o++ = b64url[(v >> 12) & 63];
		*o++ = b64url[(v >> 6) & 63];
		*o++ = b64url[v & 63];
	}
	if (n - i == 1) {
		*o++ = b64url[p[i] >> 2];
		*o++ = b64url[(p[i] & 3) << 4];
	} else if (n - i == 2) {
		*o++ = b64url[p[i] >> 2];
		*o++ = b64url[(p[i] & 3) << 4 | p[i + 1] >> 4];
		*o++ = b64url[(p[i + 1] & 15) << 2];
	}
	*o = '\0';
	return out;
}

static int
b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

unsigned char *
jwk_b64url_decode(const char *in, size_t inlen, size_t *outlen)
{
	unsigned char *out, *o;
	uint32_t acc = 0;
	int bits = 0, v;

	if (inlen % 4 == 1)
		return NULL;
	out = o = xcalloc(1, inlen / 4 * 3 + 3);
	for (size_t i = 0; i < inlen; i++) {
		if ((v = b64url_value((unsigned char)in[i])) < 0)
			goto fail;
		acc = acc << 6 | (uint32_t)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			*o++ = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)           /* the spare low bits must be zero */
		goto fail;
	*o = '\0';
	*outlen = (size_t)(o - out);
	return out;
fail:
	free(out);
	return NULL;
}

static int
pkey_is_p256(EVP_PKEY *pkey)
{
	char group[64];
	size_t len = 0;

	return EVP_PKEY_get_utf8_string_param(pkey,
	    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len) == 1 &&
	    strcmp(group, "prime256v1") == 0;
}

const char *
jwk_alg_of(EVP_PKEY *pkey)
{
	if (EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) >=
	    RSA_MIN_BITS)
		return "RS256";
	if (EVP_PKEY_is_a(pkey, "EC") && pkey_is_p256(pkey))
		return "ES256";
	return NULL;
}

/* A big-endian integer parameter as base64url, left-padded to pad bytes
 * (0: minimal). */
static char *
bn_param_b64(EVP_PKEY *pkey, const char *name, int pad)
{
	BIGNUM *bn = NULL;
	unsigned char *buf;
	char *out = NULL;
	int n;

	if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
		return NULL;
	n = pad > 0 ? pad : BN_num_bytes(bn);
	buf = xcalloc(1, (size_t)n + 1);
	if (BN_bn2binpad(bn, buf, n) == n)
		out = jwk_b64url_encode(buf, (size_t)n);
	free(buf);
	BN_free(bn);
	return out;
}

static int
set_owned(json_t *obj, const char *key, char *value)
{
	int rc = value == NULL ? -1 :
	    json_object_set_new(obj, key, json_string(value));

	free(value);
	return rc;
}

json_t *
jwk_from_pkey(EVP_PKEY *pkey, char *err, size_t errlen)
{
	const char *alg = jwk_alg_of(pkey);
	char kid[64];
	json_t *jwk;
	int rc;

	if (alg == NULL) {
		errbuf_set(err, errlen, "not an RSA key of %d bits or more "
		    "nor a P-256 key", RSA_MIN_BITS);
		return NULL;
	}
	jwk = json_object();
	if (strcmp(alg, "RS256") == 0) {
		json_object_set_new(jwk, "kty", json_string("RSA"));
		rc = set_owned(jwk, "n", bn_param_b64(pkey,
		    OSSL_PKEY_PARAM_RSA_N, 0));
		rc |= set_owned(jwk, "e", bn_param_b64(pkey,
		    OSSL_PKEY_PARAM_RSA_E, 0));
	} else {
		json_object_set_new(jwk, "kty", json_string("EC"));
		json_object_set_new(jwk, "crv", json_string("P-256"));
		rc = set_owned(jwk, "x", bn_param_b64(pkey,
		    OSSL_PKEY_PARAM_EC_PUB_X, P256_BYTES));
		rc |= set_owned(jwk, "y", bn_param_b64(pkey,
		    OSSL_PKEY_PARAM_EC_PUB_Y, P256_BYTES));
	}
	if (rc != 0 || jwk_thumbprint(jwk, kid, sizeof(kid)) != 0) {
		errbuf_set(err, errlen, "cannot read the public key");
		json_decref(jwk);
		return NULL;
	}
	json_object_set_new(jwk, "kid", json_string(kid));
	json_object_set_new(jwk, "use", json_string("sig"));
	json_object_set_new(jwk, "alg", json_string(alg));
	return jwk;
}

int
jwk_thumbprint(const json_t *jwk, char *out, size_t outlen)
{
	static const char *const rsa[] = { "e", "kty", "n", NULL };
	static const char *const ec[] = { "crv", "kty", "x", "y", NULL };
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const char *const *members;
	unsigned char md[SHA256_DIGEST_LENGTH];
	json_t *req;
	char *text, *b64;
	int rc = -1;

	if (kty == NULL)
		return -1;
	if (strcmp(kty, "RSA") == 0)
		members = rsa;
	else if (strcmp(kty, "EC") == 0)
		members = ec;
	else
		return -1;
	req = json_object();
	for (size_t i = 0; members[i] != NULL; i++) {
		json_t *v = json_object_get(jwk, members[i]);

		if (!json_is_string(v)) {
			json_decref(req);
			return -1;
		}
		json_object_set(req, members[i], v);
	}
	/* Members in lexicographic order, no whitespace (RFC 7638 3.3). */
	text = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(req);
	if (text == NULL)
		return -1;
	SHA256((const unsigned char *)text, strlen(text), md);
	free(text);
	b64 = jwk_b64url_encode(md, sizeof(md));
	if (strlen(b64) < outlen) {
		strcpy(out, b64);
		rc = 0;
	}
	free(b64);
	return rc;
}

/* A base64url member of a JWK, decoded; NULL when absent or bad. */
static unsigned char *
member_bytes(const json_t *jwk, const char *key, size_t *len)
{
	const char *s = json_string_value(json_object_get(jwk, key));

	if (s == NULL || s[0] == '\0')
		return NULL;
	return jwk_b64url_decode(s, strlen(s), len);
}

static EVP_PKEY *
pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;

	if (params == NULL || ctx == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

static EVP_PKEY *
rsa_from_jwk(const json_t *jwk)
{
	size_t nlen = 0, elen = 0;
	unsigned char *n = member_bytes(jwk, "n", &nlen);
	unsigned char *e = member_bytes(jwk, "e", &elen);
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	if (n == NULL || e == NULL)
		goto done;
	bn_n = BN_bin2bn(n, (int)nlen, NULL);
	bn_e = BN_bin2bn(e, (int)elen, NULL);
	if ((bld = OSSL_PARAM_BLD_new()) == NULL || bn_n == NULL ||
	    bn_e == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1)
		goto done;
	pkey = pkey_fromdata("RSA", bld);
done:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	free(n);
	free(e);
	return pkey;
}

static EVP_PKEY *
ec_from_jwk(const json_t *jwk)
{
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	size_t xlen = 0, ylen = 0;
	unsigned char *x = member_bytes(jwk, "x", &xlen);
	unsigned char *y = member_bytes(jwk, "y", &ylen);
	unsigned char point[1 + 2 * P256_BYTES];
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	if (crv == NULL || strcmp(crv, "P-256") != 0 || x == NULL ||
	    y == NULL || xlen != P256_BYTES || ylen != P256_BYTES)
		goto done;
	point[0] = 0x04;        /* uncompressed */
	memcpy(point + 1, x, P256_BYTES);
	memcpy(point + 1 + P256_BYTES, y, P256_BYTES);
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
	    "prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
	    point, sizeof(point)) != 1)
		goto done;
	pkey = pkey_fromdata("EC", bld);
done:
	OSSL_PARAM_BLD_free(bld);
	free(x);
	free(y);
	return pkey;
}

EVP_PKEY *
jwk_to_pkey(const json_t *jwk, const char **alg, char *err, size_t errlen)
{
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const char *want = json_string_value(json_object_get(jwk, "alg"));
	const char *use = json_string_value(json_object_get(jwk, "use"));
	EVP_PKEY *pkey = NULL;

	if (!json_is_object(jwk) || kty == NULL) {
		errbuf_set(err, errlen, "not a JWK (no kty)");
		return NULL;
	}
	if (use != NULL && strcmp(use, "sig") != 0) {
		errbuf_set(err, errlen, "key use is not \"sig\"");
		return NULL;
	}
	if (strcmp(kty, "RSA") == 0)
		pkey = rsa_from_jwk(jwk);
	else if (strcmp(kty, "EC") == 0)
		pkey = ec_from_jwk(jwk);
	else {
		errbuf_set(err, errlen, "key type is neither RSA nor EC");
		return NULL;
	}
	if (pkey == NULL || (*alg = jwk_alg_of(pkey)) == NULL) {
		errbuf_set(err, errlen, "unusable %s key", kty);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	if (want != NULL && strcmp(want, *alg) != 0) {
		errbuf_set(err, errlen, "alg \"%s\" does not fit a %s key",
		    want, kty);
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}
