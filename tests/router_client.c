/*
 * router-client: a libplatform client that calls probe-srv by name, for
 * the router tests and bench (tests/integration/router_harness.py,
 * bench/router_bench.py). It follows router-srv's views like any server
 * does (unless --no-router) and reads commands on stdin, answering each
 * with one JSON line:
 *
 *   calls N [KEY=VALUE]   N Pings by name (metadata KEY: VALUE on each):
 *                         {"nodes": {id: n}, "versions": {v: n},
 *                          "codes": {name: n}, "us": total microseconds,
 *                          "p99_us": ..}
 *   views                 {"views": n}: router-srv views applied so far
 *   weights               {"weights": {address: weight}}
 *   quit
 *
 * usage: router-client --discovery ADDR [--service probe] [--no-router]
 *                      [--label KEY=VALUE]...
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform/clock.h"
#include "platform/client.h"
#include "platform/log.h"
#include "platform/probe/v1/probe.pb-c.h"
#include "platform/router_follow.h"

#define MAX_KEYS 64
#define M_PING "/platform.probe.v1.Probe/Ping"

struct tally {
	char key[128];
	unsigned long n;
};

static void
tally_add(struct tally *t, size_t *n, const char *key)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(t[i].key, key) == 0) {
			t[i].n++;
			return;
		}
	if (*n == MAX_KEYS)
		return;
	snprintf(t[*n].key, sizeof(t[*n].key), "%s", key);
	t[(*n)++].n = 1;
}

static void
tally_print(const char *name, const struct tally *t, size_t n)
{
	printf("\"%s\": {", name);
	for (size_t i = 0; i < n; i++)
		printf("%s\"%s\": %lu", i ? ", " : "", t[i].key, t[i].n);
	printf("}");
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static void
run_calls(plat_client *c, const char *service, long n, char *kv)
{
	Platform__Probe__V1__PingRequest req =
	    PLATFORM__PROBE__V1__PING_REQUEST__INIT;
	struct plat_call_opts co = { .deadline_ms = 5000 };
	struct tally nodes[MAX_KEYS], versions[MAX_KEYS], codes[MAX_KEYS];
	size_t nn = 0, nv = 0, nc = 0;
	const char *md[3] = { NULL, NULL, NULL };
	int64_t *lat = calloc((size_t)n + 1, sizeof(*lat)), t0, total = 0;
	ProtobufCMessage *resp;
	char err[256], *eq;
	int rc;

	if (kv != NULL && (eq = strchr(kv, '=')) != NULL) {
		*eq = '\0';
		md[0] = kv;
		md[1] = eq + 1;
		co.metadata = md;
	}
	for (long i = 0; i < n; i++) {
		t0 = plat_now_us();
		rc = plat_client_call(c, service, M_PING, &req.base,
		    &platform__probe__v1__ping_response__descriptor, &resp,
		    &co, err, sizeof(err));
		lat[i] = plat_now_us() - t0;
		total += lat[i];
		tally_add(codes, &nc, plat_status_name(rc));
		if (rc == 0) {
			Platform__Probe__V1__PingResponse *p = (void *)resp;

			tally_add(nodes, &nn, p->node_id);
			tally_add(versions, &nv, p->version);
			protobuf_c_message_free_unpacked(resp, NULL);
		}
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp_i64);
	printf("{");
	tally_print("nodes", nodes, nn);
	printf(", ");
	tally_print("versions", versions, nv);
	printf(", ");
	tally_print("codes", codes, nc);
	printf(", \"us\": %lld, \"p99_us\": %lld, \"p50_us\": %lld}\n",
	    (long long)total, (long long)(n > 0 ? lat[(n * 99) / 100] : 0),
	    (long long)(n > 0 ? lat[n / 2] : 0));
	free(lat);
}

static void
print_weights(plat_client *c, const char *service)
{
	struct plat_node_stats st[MAX_KEYS];
	size_t n = plat_client_node_stats(c, service, st, MAX_KEYS);

	printf("{\"weights\": {");
	for (size_t i = 0; i < n && i < MAX_KEYS; i++)
		printf("%s\"%s\": %u", i ? ", " : "", st[i].addr,
		    st[i].weight);
	printf("}}\n");
}

int
main(int argc, char **argv)
{
	struct plat_client_opts o = { 0 };
	const char *service = "probe", *labels[2 * 16 + 1] = { NULL };
	struct plat_router_follow *f = NULL;
	int no_router = 0;
	size_t nl = 0;
	char line[512];
	plat_client *c;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--discovery") == 0 && i + 1 < argc)
			o.discovery = argv[++i];
		else if (strcmp(argv[i], "--service") == 0 && i + 1 < argc)
			service = argv[++i];
		else if (strcmp(argv[i], "--no-router") == 0)
			no_router = 1;
		else if (strcmp(argv[i], "--label") == 0 && i + 1 < argc &&
		    strchr(argv[i + 1], '=') != NULL && nl < 16) {
			char *kv = argv[++i], *eq = strchr(kv, '=');

			*eq = '\0';
			labels[2 * nl] = kv;
			labels[2 * nl + 1] = eq + 1;
			nl++;
		} else {
			fprintf(stderr, "usage: router-client --discovery ADDR "
			    "[--service NAME] [--no-router] "
			    "[--label KEY=VALUE]...\n");
			return 2;
		}
	}
	if (o.discovery == NULL) {
		fprintf(stderr, "router-client: --discovery is required\n");
		return 2;
	}
	log_setup(LOG_FORMAT_JSON, LOG_LEVEL_WARN, "router-client");
	if ((c = plat_client_new(&o)) == NULL)
		return 1;
	if (!no_router)
		f = plat_router_follow_start(c, "router-client", labels);
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin) != NULL) {
		char cmd[32] = "", arg[256] = "";
		long n = 0;

		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "%31s %ld %255s", cmd, &n, arg) < 1)
			continue;
		if (strcmp(cmd, "calls") == 0 && n > 0)
			run_calls(c, service, n, arg[0] != '\0' ? arg : NULL);
		else if (strcmp(cmd, "views") == 0)
			printf("{\"views\": %lu}\n",
			    plat_router_follow_views(f));
		else if (strcmp(cmd, "weights") == 0)
			print_weights(c, service);
		else if (strcmp(cmd, "quit") == 0)
			break;
		else
			printf("{\"error\": \"unknown command\"}\n");
	}
	plat_router_follow_stop(f);
	plat_client_free(c);
	return 0;
}
