/*
 * accounts: CreateAccount, GetAccount, UpdateAccount, DeleteAccount and
 * ListAccounts, for callers with the admin scope.
 *
 * A secret given is hashed at once (argon2id) and wiped; one the server
 * generates is returned once, in the response, and never again.
 */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "platform/paging.h"
#include "secret.h"

#define LIST_PAGE_DEFAULT 100
#define PAGE_MAX 1000
#define METADATA_MAX 64
#define METADATA_KEY_MAX 128
#define METADATA_VALUE_MAX 1024

typedef Platform__Auth__V1__Account Account;

/* Scopes as stored: checked, unique, sorted, space-separated. */
static int
scopes_canonical(plat_ctx *ctx, char *const *v, size_t n, char **out)
{
	char field[48], *s;
	size_t len = 0;
	int rc;

	if (n > AUTH_SCOPES_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "account.scopes: "
		    "at most %d", AUTH_SCOPES_MAX);
	for (size_t i = 0; i < n; i++) {
		snprintf(field, sizeof(field), "account.scopes[%zu]", i);
		if ((rc = auth_check_scope(ctx, field, v[i])) != PLAT_OK)
			return rc;
		len += strlen(v[i]) + 1;
	}
	s = *out = plat_alloc(ctx, len + 1);
	/* n is small: pick the smallest not yet taken, n times. */
	for (const char *last = NULL;;) {
		const char *next = NULL;

		for (size_t i = 0; i < n; i++)
			if ((last == NULL || strcmp(v[i], last) > 0) &&
			    (next == NULL || strcmp(v[i], next) < 0))
				next = v[i];
		if (next == NULL)
			break;
		s += sprintf(s, "%s%s", s == *out ? "" : " ", next);
		last = next;
	}
	return PLAT_OK;
}

static bool
key_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || strchr("._-/", c) != NULL;
}

/* The metadata map as a JSON object (owned by the caller). */
static int
metadata_json(plat_ctx *ctx, const Account *a, json_t **out)
{
	json_t *obj;

	*out = NULL;
	if (a->n_metadata > METADATA_MAX)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "account.metadata:"
		    " at most %d entries", METADATA_MAX);
	obj = json_object();
	for (size_t i = 0; i < a->n_metadata; i++) {
		const char *k = a->metadata[i]->key, *v = a->metadata[i]->value;
		size_t kn = strlen(k);
		bool ok = kn > 0 && kn <= METADATA_KEY_MAX &&
		    strlen(v) <= METADATA_VALUE_MAX;

		for (size_t j = 0; ok && j < kn; j++)
			ok = key_char((unsigned char)k[j]);
		if (!ok) {
			json_decref(obj);
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "account.metadata: keys of 1 to %d letters, digits "
			    "and ._-/, values of at most %d bytes",
			    METADATA_KEY_MAX, METADATA_VALUE_MAX);
		}
		json_object_set_new(obj, k, json_string(v));
	}
	*out = obj;
	return PLAT_OK;
}

/* The secret to store: given (checked) or generated (*generated, in the
 * arena, for the response); its hash into hash. */
static int
secret_for(plat_ctx *ctx, const char *given, char hash[SECRET_HASH_MAX],
    char **generated)
{
	char *s;
	int rc;

	*generated = NULL;
	if (given[0] != '\0') {
		if (strlen(given) < AUTH_SECRET_MIN ||
		    strlen(given) > AUTH_SECRET_MAX)
			return plat_error(ctx, PLAT_INVALID_ARGUMENT, "secret: "
			    "%d to %d bytes (or empty to have one generated)",
			    AUTH_SECRET_MIN, AUTH_SECRET_MAX);
		return secret_hash(given, hash) == 0 ? PLAT_OK :
		    plat_error(ctx, PLAT_INTERNAL, "cannot hash the secret");
	}
	if ((s = secret_random(AUTH_GENERATED_SECRET_BYTES)) == NULL)
		return plat_error(ctx, PLAT_INTERNAL, "no randomness");
	rc = secret_hash(s, hash) == 0 ? PLAT_OK :
	    plat_error(ctx, PLAT_INTERNAL, "cannot hash the secret");
	*generated = plat_strdup(ctx, s);
	secret_free(s);
	return rc;
}

static Account *
account_out(plat_ctx *ctx, const struct account *a)
{
	Account *out = plat_alloc(ctx, sizeof(*out));

	auth_account_fill(ctx, out, a);
	return out;
}

int
auth_create_account(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__CreateAccountRequest *req = (const void *)msg;
	Platform__Auth__V1__CreateAccountResponse *out = plat_new(ctx,
	    Platform__Auth__V1__CreateAccountResponse,
	    &platform__auth__v1__create_account_response__descriptor);
	const Account *in = req->account;
	char hash[SECRET_HASH_MAX], err[256];
	struct account a = { 0 };
	struct jwt_claims caller;
	enum plat_code code;
	int rc;

	if (in == NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "account: required");
	if ((rc = auth_check_id(ctx, "account.id", in->id)) != PLAT_OK)
		return rc;
	if (in->type != PLATFORM__AUTH__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_USER &&
	    in->type != PLATFORM__AUTH__V1__ACCOUNT_TYPE__ACCOUNT_TYPE_SERVICE)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "account.type: "
		    "ACCOUNT_TYPE_USER or ACCOUNT_TYPE_SERVICE");
	if ((rc = scopes_canonical(ctx, in->scopes, in->n_scopes,
	    &a.scopes)) != PLAT_OK ||
	    (rc = auth_caller(ctx, true, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	if ((rc = metadata_json(ctx, in, &a.metadata)) != PLAT_OK)
		return rc;
	if ((rc = secret_for(ctx, req->secret, hash, &out->secret)) !=
	    PLAT_OK) {
		json_decref(a.metadata);
		return rc;
	}
	a.id = in->id;
	a.type = (int)in->type;
	a.disabled = in->disabled;
	a.secret_hash = hash;
	code = store_account_create(A.store, &a,
	    plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	explicit_bzero(hash, sizeof(hash));
	if (code != PLAT_OK) {
		json_decref(a.metadata);
		return auth_store_error(ctx, code, err);
	}
	a.created_ms = a.updated_ms = plat_wall_ms();
	out->account = account_out(ctx, &a);
	json_decref(a.metadata);
	*resp = &out->base;
	return PLAT_OK;
}

/* The account named by id for an admin caller; NOT_FOUND when none. */
static int
account_named(plat_ctx *ctx, const char *field, const char *id,
    struct account **out)
{
	struct jwt_claims caller;
	char err[256];
	enum plat_code code;
	int rc;

	if ((rc = auth_check_id(ctx, field, id)) != PLAT_OK ||
	    (rc = auth_caller(ctx, true, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	code = store_account_get(A.store, id, plat_ctx_deadline_left_ms(ctx),
	    out, err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	if (*out == NULL)
		return plat_error(ctx, PLAT_NOT_FOUND, "account \"%s\" not "
		    "found", id);
	return PLAT_OK;
}

int
auth_get_account(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__GetAccountRequest *req = (const void *)msg;
	Platform__Auth__V1__GetAccountResponse *out = plat_new(ctx,
	    Platform__Auth__V1__GetAccountResponse,
	    &platform__auth__v1__get_account_response__descriptor);
	struct account *a;
	int rc;

	if ((rc = account_named(ctx, "id", req->id, &a)) != PLAT_OK)
		return rc;
	out->account = account_out(ctx, a);
	account_free(a);
	*resp = &out->base;
	return PLAT_OK;
}

static int
update_mask(plat_ctx *ctx, const Platform__Auth__V1__UpdateAccountRequest *req,
    struct account_update *u)
{
	if (req->n_update_mask == 0)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT, "update_mask: "
		    "name at least one of scopes, metadata, disabled, secret");
	for (size_t i = 0; i < req->n_update_mask; i++) {
		const char *f = req->update_mask[i];

		if (strcmp(f, "scopes") == 0)
			u->scopes_set = true;
		else if (strcmp(f, "metadata") == 0)
			u->metadata_set = true;
		else if (strcmp(f, "disabled") == 0)
			u->disabled_set = true;
		else if (strcmp(f, "secret") == 0)
			u->secret_set = true;
		else
			return plat_error(ctx, PLAT_INVALID_ARGUMENT,
			    "update_mask[%zu]: not a field that can change "
			    "(scopes, metadata, disabled, secret)", i);
	}
	return PLAT_OK;
}

int
auth_update_account(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__UpdateAccountRequest *req = (const void *)msg;
	Platform__Auth__V1__UpdateAccountResponse *out = plat_new(ctx,
	    Platform__Auth__V1__UpdateAccountResponse,
	    &platform__auth__v1__update_account_response__descriptor);
	const Account *in = req->account;
	struct account_update u = { 0 };
	char hash[SECRET_HASH_MAX], err[256], *scopes = NULL, *meta = NULL;
	struct jwt_claims caller;
	struct account *a = NULL;
	json_t *obj = NULL;
	enum plat_code code;
	int rc;

	if (in == NULL)
		return plat_error(ctx, PLAT_INVALID_ARGUMENT,
		    "account: required");
	if ((rc = auth_check_id(ctx, "account.id", in->id)) != PLAT_OK ||
	    (rc = update_mask(ctx, req, &u)) != PLAT_OK)
		return rc;
	if (u.scopes_set && (rc = scopes_canonical(ctx, in->scopes,
	    in->n_scopes, &scopes)) != PLAT_OK)
		return rc;
	if (u.metadata_set) {
		if ((rc = metadata_json(ctx, in, &obj)) != PLAT_OK)
			return rc;
		meta = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(obj);
	}
	if ((rc = auth_caller(ctx, true, &caller)) != PLAT_OK) {
		free(meta);
		return rc;
	}
	jwt_claims_free(&caller);
	if (u.secret_set && (rc = secret_for(ctx, req->secret, hash,
	    &out->secret)) != PLAT_OK) {
		free(meta);
		return rc;
	}
	u.scopes = scopes;
	u.metadata_json = meta;
	u.disabled = in->disabled;
	u.secret_hash = u.secret_set ? hash : NULL;
	code = store_account_update(A.store, in->id, &u,
	    plat_ctx_deadline_left_ms(ctx), &a, err, sizeof(err));
	explicit_bzero(hash, sizeof(hash));
	free(meta);
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	out->account = account_out(ctx, a);
	account_free(a);
	*resp = &out->base;
	return PLAT_OK;
}

int
auth_delete_account(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__DeleteAccountRequest *req = (const void *)msg;
	struct jwt_claims caller;
	char err[256];
	enum plat_code code;
	int rc;

	if ((rc = auth_check_id(ctx, "id", req->id)) != PLAT_OK ||
	    (rc = auth_caller(ctx, true, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	code = store_account_delete(A.store, req->id,
	    plat_ctx_deadline_left_ms(ctx), err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	*resp = plat_new_message(ctx,
	    &platform__auth__v1__delete_account_response__descriptor);
	return PLAT_OK;
}

int
auth_list_accounts(plat_ctx *ctx, const ProtobufCMessage *msg,
    ProtobufCMessage **resp)
{
	const Platform__Auth__V1__ListAccountsRequest *req = (const void *)msg;
	Platform__Auth__V1__ListAccountsResponse *out = plat_new(ctx,
	    Platform__Auth__V1__ListAccountsResponse,
	    &platform__auth__v1__list_accounts_response__descriptor);
	char after[AUTH_ID_MAX + 1] = "", err[256];
	struct jwt_claims caller;
	struct account **v;
	enum plat_code code;
	size_t n;
	int page = 0, rc;

	if ((rc = plat_page_size(ctx, req->page_size, LIST_PAGE_DEFAULT,
	    PAGE_MAX, &page)) != PLAT_OK)
		return rc;
	if (req->page_token[0] != '\0' &&
	    ((rc = plat_page_token_parse(ctx, req->page_token, 'a', after,
	    sizeof(after))) != PLAT_OK ||
	    (rc = auth_check_id(ctx, "page_token", after)) != PLAT_OK))
		return rc;
	if ((rc = auth_caller(ctx, true, &caller)) != PLAT_OK)
		return rc;
	jwt_claims_free(&caller);
	code = store_account_list(A.store, after, page + 1,
	    plat_ctx_deadline_left_ms(ctx), &v, &n, err, sizeof(err));
	if (code != PLAT_OK)
		return auth_store_error(ctx, code, err);
	out->accounts = plat_alloc(ctx, (n + 1) * sizeof(*out->accounts));
	for (size_t i = 0; i < n && i < (size_t)page; i++)
		out->accounts[out->n_accounts++] = account_out(ctx, v[i]);
	if (n > (size_t)page)
		out->next_page_token = plat_page_token(ctx, 'a',
		    out->accounts[out->n_accounts - 1]->id);
	for (size_t i = 0; i < n; i++)
		account_free(v[i]);
	free(v);
	*resp = &out->base;
	return PLAT_OK;
}
