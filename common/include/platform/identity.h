/*
 * identity: this server's own service identity, and the access tokens it
 * sends with every call it makes to other servers and to discovery.
 *
 * The credentials (a service account's client_id and client_secret) come
 * from a JSON file, the format auth-srv's bootstrap file has, or from
 * PLATFORM_CLIENT_ID and PLATFORM_CLIENT_SECRET. A token is asked of
 * auth-srv with the client_credentials grant when first needed, kept, and
 * asked again once two thirds of its lifetime have passed, or at once
 * after a server refused it. Neither the secret nor a token is ever
 * logged; the secret is wiped when freed.
 *
 * plat_identity_token and plat_identity_rejected have the shape of
 * plat_client_opts.token and .token_rejected.
 */
#ifndef PLATFORM_IDENTITY_H
#define PLATFORM_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "platform/client.h"

#define IDENTITY_ENV_ID "PLATFORM_CLIENT_ID"
#define IDENTITY_ENV_SECRET "PLATFORM_CLIENT_SECRET"

struct plat_credentials {
	char *client_id;
	char *client_secret;
};

/* The credentials in a JSON document ({"client_id": .., "client_secret":
 * ..}; other members are ignored): 0, or -1 with the reason in err
 * (never quoting the secret). */
int plat_credentials_parse(const char *json, struct plat_credentials *out,
    char *err, size_t errlen);

/* From file when given (refused when group or others may read it), else
 * from the environment: 1 loaded, 0 none configured, -1 an error in err
 * naming the setting. */
int plat_credentials_load(const char *file, struct plat_credentials *out,
    char *err, size_t errlen);

/* Wipes the secret and frees both. */
void plat_credentials_free(struct plat_credentials *c);

/* When to ask again for a token obtained at now_ms that lives
 * expires_in_s: two thirds through its life (at least a second on). */
int64_t plat_identity_renew_at(int64_t now_ms, int64_t expires_in_s);

struct plat_identity;

/* Takes over creds (zeroed on return). Tokens come from auth-srv at
 * auth_addr, through a client of its own made with the TLS files of
 * tls (its token fields are ignored). */
struct plat_identity *plat_identity_new(const char *auth_addr,
    struct plat_credentials *creds, const struct plat_client_opts *tls);
void plat_identity_free(struct plat_identity *id);

const char *plat_identity_client_id(const struct plat_identity *id);

/* A current token into buf: 0, or -1 when none can be had (auth-srv
 * unreachable, credentials refused: logged once per change). */
int plat_identity_token(void *id, char *buf, size_t len);
/* A server refused the last token: the next call gets a new one. */
void plat_identity_rejected(void *id);

#endif
