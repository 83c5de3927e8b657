/*
 * fuzz_auth_request: auth-srv's requests as the runtime decodes them
 * (fuzz_request.h), then the checks of common code its handlers make:
 * CreateRule's rule_check (common/rules.c) on the rule as the handler
 * builds it, Verify's service and method names and its evaluation,
 * Inspect's token through jwt_verify (no key verifies it here), and the
 * page tokens of ListRules and ListAccounts.
 *
 * Not reached: auth-srv's own id, scope and secret checks
 * (auth_check_id, auth_check_scope in services/auth/handlers.c), which
 * live beside the store and the key thread and cannot be linked alone;
 * their bytes still go through the decode and the UTF-8 walk here.
 */
#include <string.h>

#include "fuzz.h"
#include "fuzz_request.h"
#include "platform/auth/v1/auth.pb-c.h"
#include "platform/jwt_verify.h"
#include "platform/paging.h"
#include "platform/rules.h"

static void
check_create_rule(const Platform__Auth__V1__CreateRuleRequest *req)
{
	const Platform__Auth__V1__Rule *in = req->rule;
	struct rule r, **one;
	struct rule_set *rs;
	struct rule_subject who = { .account = "a" };
	char err[256];
	bool allowed;

	if (in == NULL)
		return;
	r = (struct rule){
		.id = "r-fuzz",
		.service = in->service,
		.method = in->method,
		.account = in->account,
		.scope = in->scope,
		.account_type = (int)in->account_type,
		.effect = (int)in->effect,
		.priority = in->priority,
		.description = in->description,
	};
	if (rule_check(&r, err, sizeof(err)) != 0)
		return;
	/* A stored rule is what every guard then evaluates. */
	one = malloc(sizeof(*one));
	FUZZ_ASSERT(one != NULL);
	one[0] = rule_copy(&r);
	rs = rule_set_new(one, 1);
	(void)rule_evaluate(rs, &who, in->service, in->method, &allowed);
	rule_set_unref(rs);
}

/* Verify's check_name: a gRPC name is a rule pattern without '*'. */
static int
check_name(const char *v)
{
	struct rule r = { .service = (char *)v, .method = "*",
	    .account = "*", .scope = "", .effect = RULE_ALLOW,
	    .description = "" };
	char err[256];

	return v[0] == '\0' || strchr(v, '*') != NULL ||
	    rule_check(&r, err, sizeof(err)) != 0 ? -1 : 0;
}

static void
check_verify(const Platform__Auth__V1__VerifyRequest *req)
{
	struct rule_subject who = {
		.account = req->account,
		.scopes = (const char *const *)req->scopes,
		.nscopes = req->n_scopes,
		.account_type = (int)req->account_type,
	};
	struct rule r = { .id = "r", .service = "*", .method = "*",
	    .account = "", .scope = "*", .effect = RULE_ALLOW,
	    .description = "" };

	if (check_name(req->service) != 0 || check_name(req->method) != 0)
		return;
	FUZZ_ASSERT(rule_applies(&r, &who, req->service, req->method));
}

static void
check_inspect(const Platform__Auth__V1__InspectRequest *req)
{
	const struct jwt_expect expect = { .issuer = "platform-auth",
	    .audience = "platform", .now = 1700000000, .leeway = 5 };
	struct jwt_claims c;
	char err[256];

	FUZZ_ASSERT(jwt_verify(NULL, req->token, &expect, &c, err,
	    sizeof(err)) != JWT_OK);
	(void)jwt_bearer(req->token);
}

static void
check_page(plat_ctx *ctx, int32_t size, const char *token, char kind)
{
	char after[RULE_PATTERN_MAX + 64];
	int page;

	if (plat_page_size(ctx, size, 100, 1000, &page) == PLAT_OK &&
	    token[0] != '\0')
		(void)plat_page_token_parse(ctx, token, kind, after,
		    sizeof(after));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	plat_ctx *ctx = fuzz_ctx_begin();
	const ProtobufCMethodDescriptor *m;
	const ProtobufCMessage *msg = fuzz_request(ctx,
	    &platform__auth__v1__auth__descriptor, data, size, &m);

	if (msg == NULL)
		goto done;
	fuzz_roundtrip(msg);
	if (FUZZ_IS(msg, platform__auth__v1__create_rule_request__descriptor))
		check_create_rule((const void *)msg);
	else if (FUZZ_IS(msg, platform__auth__v1__verify_request__descriptor))
		check_verify((const void *)msg);
	else if (FUZZ_IS(msg, platform__auth__v1__inspect_request__descriptor))
		check_inspect((const void *)msg);
	else if (FUZZ_IS(msg,
	    platform__auth__v1__list_rules_request__descriptor))
		check_page(ctx, ((const Platform__Auth__V1__ListRulesRequest *)
		    msg)->page_size, ((const
		    Platform__Auth__V1__ListRulesRequest *)msg)->page_token, 'r');
	else if (FUZZ_IS(msg,
	    platform__auth__v1__list_accounts_request__descriptor))
		check_page(ctx, ((const
		    Platform__Auth__V1__ListAccountsRequest *)msg)->page_size,
		    ((const Platform__Auth__V1__ListAccountsRequest *)msg)->
		    page_token, 'a');
done:
	fuzz_ctx_end(ctx);
	return 0;
}
