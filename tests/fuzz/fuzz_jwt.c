/*
 * fuzz_jwt: access tokens as every guard checks them (common/guard.c's
 * guard_decide: the bearer header, common/jwt_verify.c's parsing and
 * verification, then the rules), the JWKS documents the keys come in
 * (common/jwk.c), and base64url.
 *
 * The first byte picks what the rest is:
 *   0  an authorization header value, checked as sent
 *   1  header JSON NUL claims JSON, signed ES256 with this target's key
 *      and then checked, so the claims checks are reached at all
 *   2  a JWKS document, then a token signed with this target's key
 *      checked against the keys it holds
 *   3  base64url text, which decodes only in its one canonical spelling
 */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>

#include "fuzz.h"
#include "platform/guard.h"
#include "platform/jwk.h"
#include "platform/jwt_verify.h"
#include "platform/rules.h"

/* A P-256 key made for this target alone; its kid (the thumbprint) is
 * in the corpus's tokens. */
static const char test_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQguQI5aPdiZl1URrQJ\n"
    "tp5UA6HPcws4JwSaHMd62qEfXP+hRANCAAS+LNn0YwmvzElmfbn+EoaUamZFwL9F\n"
    "+BqCadnnkaOvMSjXJt/5qztcBSIOOkpvpMsQ1pRDqXHaTaWkWVcO/pmz\n"
    "-----END PRIVATE KEY-----\n";

#define NOW 1700000000

static EVP_PKEY *key;
static struct jwt_keyset *keys;
static struct rule_set *rules;
static const struct jwt_expect expect = {
	.issuer = "platform-auth",
	.audience = "platform",
	.now = NOW,
	.leeway = 5,
};

/* header.claims signed ES256 (r || s, as JWS has it), malloc'd. */
static char *
sign(const char *header, const char *claims)
{
	char *h = jwk_b64url_encode(header, strlen(header));
	char *c = jwk_b64url_encode(claims, strlen(claims));
	size_t n = strlen(h) + strlen(c) + 2, derlen = 0;
	char *input = malloc(n), *s, *token;
	unsigned char *der, raw[64];
	const unsigned char *p;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *es;

	FUZZ_ASSERT(input != NULL && md != NULL);
	snprintf(input, n, "%s.%s", h, c);
	FUZZ_ASSERT(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
	    key) == 1);
	FUZZ_ASSERT(EVP_DigestSign(md, NULL, &derlen,
	    (const unsigned char *)input, n - 1) == 1);
	der = malloc(derlen);
	FUZZ_ASSERT(der != NULL);
	FUZZ_ASSERT(EVP_DigestSign(md, der, &derlen,
	    (const unsigned char *)input, n - 1) == 1);
	p = der;
	es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	FUZZ_ASSERT(es != NULL);
	BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
	s = jwk_b64url_encode(raw, sizeof(raw));
	token = malloc(n + strlen(s) + 1);
	FUZZ_ASSERT(token != NULL);
	sprintf(token, "%s.%s", input, s);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	free(der);
	free(input);
	free(h);
	free(c);
	free(s);
	return token;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	BIO *bio = BIO_new_mem_buf(test_key_pem, -1);
	struct rule allow = { .id = "allow", .service = "*", .method = "*",
	    .account = "*", .scope = "", .effect = RULE_ALLOW,
	    .description = "" };
	struct rule deny = { .id = "deny", .service = "*", .method = "Update",
	    .account = "", .scope = "ops:*", .effect = RULE_DENY,
	    .priority = 1, .description = "" };
	struct rule **v = calloc(2, sizeof(*v));
	json_t *jwk, *jwks;
	char err[256];

	(void)argc;
	(void)argv;
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	BIO_free(bio);
	FUZZ_ASSERT(key != NULL && v != NULL);
	jwk = jwk_from_pkey(key, err, sizeof(err));
	FUZZ_ASSERT(jwk != NULL);
	jwks = json_pack("{s:[o]}", "keys", jwk);
	keys = jwt_keyset_from_json(jwks, err, sizeof(err));
	FUZZ_ASSERT(keys != NULL && jwt_keyset_size(keys) == 1);
	json_decref(jwks);
	v[0] = rule_copy(&allow);
	v[1] = rule_copy(&deny);
	rules = rule_set_new(v, 2);
	return 0;
}

/* What the guard decides on an authorization value, and what a pass
 * promises the handlers. */
static void
decide(const char *authorization, const char *method)
{
	struct jwt_claims claims, copy;
	int unknown = 0, code;
	char msg[512];

	code = guard_decide(keys, rules, authorization, &expect,
	    "platform.config.v1.Config", method, &claims, &unknown, msg,
	    sizeof(msg));
	if (code != 0) {
		FUZZ_ASSERT(msg[0] != '\0');
		return;
	}
	FUZZ_ASSERT(claims.sub != NULL && claims.jti != NULL);
	FUZZ_ASSERT(claims.exp != 0 && NOW < claims.exp + expect.leeway);
	FUZZ_ASSERT(claims.iss != NULL &&
	    strcmp(claims.iss, expect.issuer) == 0);
	jwt_claims_copy(&copy, &claims);
	for (size_t i = 0; i < claims.nscopes; i++)
		FUZZ_ASSERT(jwt_claims_has_scope(&copy, claims.scopes[i]));
	jwt_claims_free(&claims);
	jwt_claims_free(&copy);
}

static void
fuzz_jwks(const char *text)
{
	static const char header[] = "{\"alg\":\"ES256\",\"kid\":\"k\"}";
	static const char claims[] = "{\"sub\":\"a\",\"jti\":\"j\","
	    "\"iss\":\"platform-auth\",\"aud\":\"platform\","
	    "\"exp\":1700000100}";
	struct jwt_keyset *ks;
	struct jwt_claims c;
	char err[256], *token;

	if ((ks = jwt_keyset_from_jwks(text, err, sizeof(err))) == NULL)
		return;
	token = sign(header, claims);
	if (jwt_verify(ks, token, &expect, &c, err, sizeof(err)) == JWT_OK)
		jwt_claims_free(&c);
	free(token);
	jwt_keyset_unref(ks);
}

static void
fuzz_b64url(const char *text)
{
	size_t n = 0;
	unsigned char *raw = jwk_b64url_decode(text, strlen(text), &n);
	char *again;

	if (raw == NULL)
		return;
	again = jwk_b64url_encode(raw, n);
	FUZZ_ASSERT(strcmp(again, text) == 0);
	free(again);
	free(raw);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in;
	const char *header, *claims;
	char *token, *value;

	fuzz_in_init(&in, data, size);
	switch (fuzz_byte(&in) % 4) {
	case 0:
		decide(fuzz_str(&in), "Read");
		break;
	case 1:
		header = fuzz_str(&in);
		claims = fuzz_str(&in);
		token = sign(header, claims);
		value = malloc(strlen(token) + 8);
		FUZZ_ASSERT(value != NULL);
		sprintf(value, "Bearer %s", token);
		decide(value, "Read");
		decide(value, "Update");
		free(value);
		free(token);
		break;
	case 2:
		fuzz_jwks(fuzz_str(&in));
		break;
	default:
		fuzz_b64url(fuzz_str(&in));
		break;
	}
	fuzz_in_free(&in);
	return 0;
}
