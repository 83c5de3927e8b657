/*
 * jwk: the public keys of the platform's token signatures as JSON Web
 * Keys (RFC 7517, 7518), through OpenSSL.
 *
 * Two kinds, each pinned to one algorithm: RSA keys (2048 bits or more)
 * sign RS256, P-256 EC keys sign ES256. A key's id is its RFC 7638
 * thumbprint, so the same key has the same kid wherever it is computed.
 * auth-srv publishes its keys with jwk_from_pkey; every verifier reads
 * them back with jwk_to_pkey (platform/jwt_verify.h).
 */
#ifndef PLATFORM_JWK_H
#define PLATFORM_JWK_H

#include <stddef.h>
#include <jansson.h>
#include <openssl/evp.h>

/* base64url without padding (RFC 7515 section 2); malloc'd. */
char *jwk_b64url_encode(const void *in, size_t n);
/* Strict decoding: only the base64url alphabet, no padding, no
 * whitespace, no stray bits. A malloc'd buffer (NUL-terminated, for text)
 * and its length in *outlen, or NULL. */
unsigned char *jwk_b64url_decode(const char *in, size_t inlen,
    size_t *outlen);

/* "RS256" for an RSA key of 2048 bits or more, "ES256" for a P-256 key,
 * NULL for any other. */
const char *jwk_alg_of(EVP_PKEY *pkey);

/* The public JWK of pkey: kty, kid (the thumbprint), use "sig", alg and
 * n/e or crv/x/y. NULL with the reason in err for an unusable key. */
json_t *jwk_from_pkey(EVP_PKEY *pkey, char *err, size_t errlen);

/* The public key of a JWK and its algorithm (*alg: "RS256" or "ES256",
 * static). The JWK's own "alg", when present, must agree with its key
 * type; "use", when present, must be "sig". NULL with the reason in err. */
EVP_PKEY *jwk_to_pkey(const json_t *jwk, const char **alg, char *err,
    size_t errlen);

/* The RFC 7638 thumbprint of a JWK (base64url SHA-256 of its required
 * members, in order) into out; 0, or -1 for a JWK that lacks them. */
int jwk_thumbprint(const json_t *jwk, char *out, size_t outlen);

#endif
