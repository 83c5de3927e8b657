/*
 * fuzz_settings: what a server reads before it starts: its flags and
 * PLATFORM_* environment (common/settings.c, with a service option of
 * its own as config-srv and event-srv add them), addresses, and the
 * --credentials file's JSON (common/identity.c).
 *
 * Input: an argument count byte, that many arguments, then NAME=value
 * environment entries, one per field; the last field is also parsed as a
 * credentials document. Invariants: a parse either succeeds with every
 * value in its documented range or fails with a message.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "platform/identity.h"
#include "platform/settings.h"

#define ARGS_MAX 16
#define ENV_MAX 16

static const char *env[ENV_MAX];
static size_t nenv;

/* The environment of this input: NAME=value entries. */
static const char *
fuzz_getenv(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < nenv; i++)
		if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
			return env[i] + n + 1;
	return NULL;
}

static void
check_parsed(const struct plat_settings *s)
{
	FUZZ_ASSERT(s->listen != NULL);
	FUZZ_ASSERT(s->workers >= 1 && s->workers <= 256);
	FUZZ_ASSERT(s->max_message_bytes >= 1024 &&
	    s->max_message_bytes <= 67108864);
	FUZZ_ASSERT(s->grace_ms >= 0 && s->grace_ms <= 600000);
	FUZZ_ASSERT(s->register_ttl_s >= 3 && s->register_ttl_s <= 3600);
	FUZZ_ASSERT((s->tls_cert == NULL) == (s->tls_key == NULL));
	if (s->discovery != NULL && s->discovery[0] != '\0') {
		/* One address or several, none empty. */
		char *copy = strdup(s->discovery), *save = NULL, *one;
		size_t len = strlen(s->discovery);

		FUZZ_ASSERT(copy != NULL);
		FUZZ_ASSERT(strstr(s->discovery, ",,") == NULL &&
		    s->discovery[0] != ',' && s->discovery[len - 1] != ',');
		for (one = strtok_r(copy, ",", &save); one != NULL;
		    one = strtok_r(NULL, ",", &save))
			FUZZ_ASSERT(settings_check_address(one) == 0);
		free(copy);
	}
	if (s->auth != NULL)
		FUZZ_ASSERT(settings_check_address(s->auth) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *store_limit = NULL;
	const struct settings_option extra[] = {
		{ "--store-limit", "PLATFORM_STORE_LIMIT", "a limit",
		    &store_limit },
	};
	const struct settings_spec spec = {
		.prog = "fuzz-srv",
		.default_listen = "127.0.0.1:7070",
		.extra = extra,
		.nextra = 1,
	};
	struct plat_settings s;
	struct plat_credentials creds;
	struct fuzz_in in;
	char *argv[ARGS_MAX + 2], err[512];
	const char *last = "";
	int argc = 1, rc;

	fuzz_in_init(&in, data, size);
	argv[0] = "fuzz-srv";
	for (unsigned n = fuzz_byte(&in) % (ARGS_MAX + 1); n > 0; n--)
		argv[argc++] = fuzz_str(&in);
	argv[argc] = NULL;
	for (nenv = 0; nenv < ENV_MAX && fuzz_more(&in); nenv++)
		env[nenv] = last = fuzz_str(&in);

	err[0] = '\0';
	rc = settings_parse(&s, &spec, argc, argv, fuzz_getenv, err,
	    sizeof(err));
	if (rc == SETTINGS_OK)
		check_parsed(&s);
	else if (rc == SETTINGS_ERROR)
		FUZZ_ASSERT(err[0] != '\0' && strchr(err, '\n') == NULL);
	settings_free(&s);
	free(store_limit);

	for (int i = 1; i < argc; i++)
		(void)settings_check_address(argv[i]);

	if (plat_credentials_parse(last, &creds, err, sizeof(err)) == 0) {
		FUZZ_ASSERT(creds.client_id != NULL &&
		    creds.client_secret != NULL);
		plat_credentials_free(&creds);
	} else {
		FUZZ_ASSERT(err[0] != '\0');
	}
	fuzz_in_free(&in);
	return 0;
}
