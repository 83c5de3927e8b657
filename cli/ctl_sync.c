/*
 * ctl_sync: `platformctl sync leases|lock|leader|observe`, an operator's
 * view of sync-srv. See ctl_sync.h.
 *
 * `lock NAME -- CMD` is etcdctl's lock: a lease is granted (--ttl), the
 * lock taken under it (waiting in FIFO order, up to --wait), and CMD run
 * with the fencing token in its environment (PLATFORM_FENCING_TOKEN,
 * PLATFORM_LOCK_NAME, PLATFORM_LEASE_ID) while a thread keeps the lease
 * alive. When CMD ends the lock is unlocked and the lease revoked, and
 * platformctl exits with CMD's status (128+N for a signal N). When the
 * lease is lost (sync-srv says it lapsed, or it could not be renewed
 * within its TTL less a margin) CMD is killed, stderr says so and the
 * exit status is 1: another holder may have the lock by then, with a
 * larger token. SIGINT/SIGTERM while it waits revoke the lease (so it
 * leaves the queue) and exit 128+N. Without CMD the lock is held until
 * SIGINT/SIGTERM.
 *
 * leader prints an election's leader and its value; observe prints the
 * leader, then every change, one line each until Ctrl-C; leases prints
 * the TTL of the given leases (sync-srv keeps no list of them). Exit
 * status: 0 ok, 1 a call failed (or there is no leader, or the lease was
 * lost), 2 bad usage; lock passes CMD's on.
 */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_auth.h"
#include "ctl_call.h"
#include "ctl_out.h"
#include "ctl_sync.h"
#include "platform/clock.h"
#include "platform/server.h"	/* PLAT_NOT_FOUND, the status codes */
#include "platform/sync/v1/sync.pb-c.h"
#include "platform/xalloc.h"

extern char **environ;

#define PROG		"platformctl"
#define SYNC_SERVICE	"sync"
#define TTL_DEFAULT_MS	10000		/* --ttl */
#define TTL_MIN_MS	100		/* what sync-srv grants */
#define TTL_MAX_MS	86400000
#define KILL_GRACE_MS	2000		/* SIGTERM, then SIGKILL */
#define CHILD_POLL_MS	20
#define ERRLEN		512

#define M_PREFIX	"/platform.sync.v1.Sync/"
#define M_GRANT		M_PREFIX "Grant"
#define M_KEEPALIVE	M_PREFIX "KeepAlive"
#define M_REVOKE	M_PREFIX "Revoke"
#define M_TTL		M_PREFIX "TimeToLive"
#define M_LOCK		M_PREFIX "Lock"
#define M_UNLOCK	M_PREFIX "Unlock"
#define M_LEADER	M_PREFIX "Leader"
#define M_OBSERVE	M_PREFIX "Observe"

/* What CMD finds in its environment. */
#define ENV_TOKEN	"PLATFORM_FENCING_TOKEN"
#define ENV_NAME	"PLATFORM_LOCK_NAME"
#define ENV_LEASE	"PLATFORM_LEASE_ID"

typedef Platform__Sync__V1__LeaderInfo pb_leader;

/* The sync commands' own flags, as given (NULL: not given). */
struct sy_flags {
	const char *sync, *ttl, *wait;
};

static const struct sy_flags *
sy_f(const struct ctl_run *x)
{
	return x->flags;
}

#define usage_error(...)	ctl_usage(&ctl_sync_group, __VA_ARGS__)

static int
sy_call(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **resp, int idempotent)
{
	return ctl_call_service(x, SYNC_SERVICE, sy_f(x)->sync, method, req,
	    desc, resp, idempotent);
}

/* A call whose answer is not wanted. */
static int
sy_call_drop(const struct ctl_run *x, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = NULL;
	int rc;

	rc = sy_call(x, method, req, desc, &m, 0);
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* A duration flag in [min, max] ms (range says so), dflt when not
 * given. */
static int
duration_of(const char *flag, const char *range, const char *s,
    int64_t min, int64_t max, int64_t dflt, int64_t *ms)
{
	*ms = dflt;
	if (s == NULL)
		return 0;
	if (ctl_parse_duration(s, max, ms) == 0 && *ms >= min)
		return 0;
	return usage_error("%s must be a duration of %s (500ms, 30s, 5m, 1h; a "
	    "bare number is seconds), not '%s'", flag, range, s);
}

/* ---- leases ---- */

static int
lease_of(const char *s, int64_t *id)
{
	long long v;

	if (ctl_parse_int(s, 1, INT64_MAX, &v) != 0)
		return usage_error("leases: a lease id is a whole number of at "
		    "least 1, not '%s'", s);
	*id = v;
	return 0;
}

static int
sy_leases(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Sync__V1__TimeToLiveRequest req =
	    PLATFORM__SYNC__V1__TIME_TO_LIVE_REQUEST__INIT;
	const Platform__Sync__V1__TimeToLiveResponse *r;
	struct ctl_table t = { .ncols = 3 };
	json_t *all = json_array();
	ProtobufCMessage *m;
	char c[3][24];
	int rc = CTL_OK;

	for (int i = 0; i < argc && rc == CTL_OK; i++)
		rc = lease_of(argv[i], &req.lease_id);
	ctl_table_row(&t, (const char *[]){ "LEASE", "TTL_MS",
	    "REMAINING_MS" });
	for (int i = 0; i < argc && rc == CTL_OK; i++) {
		lease_of(argv[i], &req.lease_id);
		if ((rc = sy_call(x, M_TTL, &req.base,
		    &platform__sync__v1__time_to_live_response__descriptor,
		    &m, 1)) != CTL_OK)
			break;
		r = (const void *)m;
		json_array_append_new(all, json_pack("{s:I, s:I, s:I}",
		    "lease_id", (json_int_t)r->lease_id,
		    "ttl_ms", (json_int_t)r->ttl_ms,
		    "remaining_ms", (json_int_t)r->remaining_ms));
		snprintf(c[0], 24, "%" PRId64, r->lease_id);
		snprintf(c[1], 24, "%" PRId64, r->ttl_ms);
		snprintf(c[2], 24, "%" PRId64, r->remaining_ms);
		ctl_table_row(&t, (const char *[]){ c[0], c[1], c[2] });
		protobuf_c_message_free_unpacked(m, NULL);
	}
	if (rc == CTL_OK && x->g->json) {
		rc = ctl_json_print(all, JSON_INDENT(2));
		all = NULL;
	} else if (rc == CTL_OK)
		ctl_table_print(&t, stdout);
	json_decref(all);
	ctl_table_free(&t);
	return rc;
}

/* ---- the lease keeper ---- */

/*
 * A thread renewing a lease every third of its TTL, each renewal a
 * KeepAlive stream of one heartbeat. It gives up, setting lost, when
 * sync-srv answers that the lease is gone, or when the last renewal it
 * saw confirmed was sent longer ago than the TTL less a margin: past
 * that the lease may have lapsed on the database's clock.
 */
struct keeper {
	const struct ctl_run *x;
	char *addr;
	int64_t lease, ttl_ms;
	int64_t renewed;		/* when the last good one was sent */
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;			/* under mu */
	atomic_int lost;
	char why[ERRLEN + 128];	/* set before lost */
};

/* Margin before the TTL runs out on our clock: a fifth, at most 2 s. */
static int64_t
keeper_margin(int64_t ttl_ms)
{
	return ttl_ms / 5 < 2000 ? ttl_ms / 5 : 2000;
}

/* One heartbeat: the TTL left (0: gone), or -1 with err set. */
static int64_t
keeper_beat(struct keeper *k, char *err, size_t errlen, int *code)
{
	Platform__Sync__V1__KeepAliveRequest req =
	    PLATFORM__SYNC__V1__KEEP_ALIVE_REQUEST__INIT;
	plat_client_stream *s = NULL;
	ProtobufCMessage *m = NULL;
	int64_t left = -1;
	int n, wait = (int)(k->ttl_ms / 3);

	req.lease_id = k->lease;
	*code = plat_client_stream_open(ctl_client(k->x->g), k->addr,
	    M_KEEPALIVE, &req.base, wait, ctl_auth_metadata(k->x->g), &s, err,
	    errlen);
	if (*code != 0)
		return -1;
	n = plat_client_stream_next(s,
	    &platform__sync__v1__keep_alive_response__descriptor, &m, wait);
	if (n == PLAT_STREAM_MESSAGE && m != NULL) {
		left = ((Platform__Sync__V1__KeepAliveResponse *)m)->ttl_ms;
		protobuf_c_message_free_unpacked(m, NULL);
		plat_client_stream_cancel(s);
	} else if (n == PLAT_STREAM_END) {
		*code = plat_client_stream_status(s, err, errlen);
		if (*code == 0) {
			*code = PLAT_UNAVAILABLE;
			snprintf(err, errlen, "KeepAlive ended without an "
			    "answer");
		}
	} else {
		plat_client_stream_cancel(s);
		*code = PLAT_DEADLINE_EXCEEDED;
		snprintf(err, errlen, "KeepAlive: no answer within %d ms",
		    wait);
	}
	plat_client_stream_free(s);
	return left;
}

static void
keeper_lose(struct keeper *k, const char *fmt, const char *detail)
{
	snprintf(k->why, sizeof(k->why), fmt, k->lease, detail);
	atomic_store(&k->lost, 1);
}

/*
 * Beats every third of the TTL; after a failed one, again every tenth
 * (at least 50 ms), and the lease is lost once the TTL less the margin
 * has passed since the last good one was sent, checked at every wake-up.
 */
static void *
keeper_run(void *arg)
{
	struct keeper *k = arg;
	int64_t sent, left, due, next = k->ttl_ms / 3;
	char err[ERRLEN] = "no answer yet";
	int code;

	pthread_mutex_lock(&k->mu);
	while (!plat_cond_wait_ms(&k->cv, &k->mu, next, &k->stop)) {
		pthread_mutex_unlock(&k->mu);
		due = k->renewed + k->ttl_ms - keeper_margin(k->ttl_ms);
		if (plat_now_ms() >= due) {
			keeper_lose(k, "lease %" PRId64 " could not be renewed "
			    "within its TTL: %s", err);
			return NULL;
		}
		sent = plat_now_ms();
		left = keeper_beat(k, err, sizeof(err), &code);
		if (left > 0) {
			k->renewed = sent;
			next = k->ttl_ms / 3;
		} else if (left == 0 || code == PLAT_NOT_FOUND) {
			keeper_lose(k, "lease %" PRId64 " lapsed or was "
			    "revoked (%s)", left == 0 ? "KeepAlive answered "
			    "TTL 0" : err);
			return NULL;
		} else {
			next = k->ttl_ms / 10 > 50 ? k->ttl_ms / 10 : 50;
			if (next > due - plat_now_ms())
				next = due - plat_now_ms() > 0 ?
				    due - plat_now_ms() : 0;
		}
		pthread_mutex_lock(&k->mu);
	}
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

static void
keeper_start(struct keeper *k)
{
	pthread_mutex_init(&k->mu, NULL);
	plat_cond_init(&k->cv);
	if (pthread_create(&k->thread, NULL, keeper_run, k) != 0) {
		fprintf(stderr, PROG ": sync: cannot start a thread\n");
		exit(CTL_FAIL);
	}
}

static void
keeper_stop(struct keeper *k)
{
	pthread_mutex_lock(&k->mu);
	k->stop = 1;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->thread, NULL);
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mu);
}

/* ---- lock ---- */

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* The environment with CMD's three variables in place of any there. */
static char **
cmd_env(const char *name, int64_t lease, int64_t token)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ[n] != NULL)
		n++;
	env = xcalloc(n + 4, sizeof(*env));
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], ENV_TOKEN "=", sizeof(ENV_TOKEN)) &&
		    strncmp(environ[i], ENV_NAME "=", sizeof(ENV_NAME)) &&
		    strncmp(environ[i], ENV_LEASE "=", sizeof(ENV_LEASE)))
			env[k++] = xstrdup(environ[i]);
	if (asprintf(&env[k++], ENV_TOKEN "=%" PRId64, token) < 0 ||
	    asprintf(&env[k++], ENV_NAME "=%s", name) < 0 ||
	    asprintf(&env[k++], ENV_LEASE "=%" PRId64, lease) < 0)
		abort();
	return env;
}

static void
cmd_env_free(char **env)
{
	for (size_t i = 0; env[i] != NULL; i++)
		free(env[i]);
	free(env);
}

/*
 * Runs argv while the lease holds: its exit status (128+N after signal
 * N), or CTL_FAIL after a message when it could not start or the lease
 * was lost (then it is killed: SIGTERM, SIGKILL after a grace). Our
 * SIGTERM is passed on to it; SIGINT from a terminal reaches it by
 * itself, being in our process group.
 */
static int
cmd_run(const char *name, struct keeper *k, int64_t token, char **argv)
{
	char **env = cmd_env(name, k->lease, token);
	int64_t killed = 0;
	int st, err, passed = 0;
	pid_t pid, w;

	err = posix_spawnp(&pid, argv[0], NULL, NULL, argv, env);
	cmd_env_free(env);
	if (err != 0) {
		fprintf(stderr, PROG ": sync lock: cannot run %s: %s\n",
		    argv[0], strerror(err));
		return 127;
	}
	for (;;) {
		if ((w = waitpid(pid, &st, WNOHANG)) == pid)
			break;
		if (w < 0) {
			perror(PROG ": sync lock: waitpid");
			return CTL_FAIL;
		}
		if (ctl_stop == SIGTERM && !passed) {
			kill(pid, SIGTERM);
			passed = 1;
		}
		if (atomic_load(&k->lost) && killed == 0) {
			fprintf(stderr, PROG ": sync lock %s: %s; killing %s "
			    "(pid %ld)\n", name, k->why, argv[0], (long)pid);
			kill(pid, SIGTERM);
			killed = plat_now_ms();
		} else if (killed > 0 &&
		    plat_now_ms() - killed > KILL_GRACE_MS) {
			kill(pid, SIGKILL);
			killed = -1;
		}
		sleep_ms(CHILD_POLL_MS);
	}
	if (atomic_load(&k->lost))
		return CTL_FAIL;
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/* Without CMD: says what it holds and holds it until a signal. */
static int
hold(const struct ctl_run *x, const char *name, struct keeper *k,
    int64_t token)
{
	if (x->g->json)
		ctl_json_print(json_pack("{s:o, s:I, s:I}", "name",
		    ctl_jstr(name), "token", (json_int_t)token, "lease_id",
		    (json_int_t)k->lease), JSON_COMPACT);
	else
		ctl_put_line(stdout, "%s token=%" PRId64 " lease=%" PRId64,
		    name, token, k->lease);
	fflush(stdout);
	while (!ctl_stop && !atomic_load(&k->lost))
		sleep_ms(CHILD_POLL_MS);
	if (!atomic_load(&k->lost))
		return CTL_OK;
	fprintf(stderr, PROG ": sync lock %s: %s\n", name, k->why);
	return CTL_FAIL;
}

/* Ends lease: CTL_OK, or CTL_FAIL after a message. */
static int
lease_revoke(const struct ctl_run *x, int64_t lease)
{
	Platform__Sync__V1__RevokeRequest req =
	    PLATFORM__SYNC__V1__REVOKE_REQUEST__INIT;

	req.lease_id = lease;
	return sy_call_drop(x, M_REVOKE, &req.base,
	    &platform__sync__v1__revoke_response__descriptor);
}

/* A Lock call on a thread of its own, so that a signal while it waits
 * ends the wait at once: the lease is revoked, which ends the call and
 * takes it out of the queue (else it would wait there, and could even
 * be granted the lock, until its lease lapsed). */
struct lock_wait {
	const struct ctl_run *x;
	Platform__Sync__V1__LockRequest req;
	ProtobufCMessage *m;
	char err[ERRLEN];
	int code;
	atomic_int done;
};

static void *
lock_wait_run(void *arg)
{
	struct lock_wait *w = arg;

	w->code = ctl_unary(w->x->g, SYNC_SERVICE, sy_f(w->x)->sync, M_LOCK,
	    &w->req.base, &platform__sync__v1__lock_response__descriptor,
	    &w->m, 0, ctl_auth_metadata(w->x->g), w->err, sizeof(w->err));
	atomic_store(&w->done, 1);
	return NULL;
}

/*
 * Takes lock name under k's lease, waiting up to xw's deadline: CTL_OK
 * with *token, else the exit status after a message. *revoked is set
 * when a signal (or the lease lost) ended the wait by revoking the
 * lease: then there is nothing left to release.
 */
static int
lock_wait(const struct ctl_run *xw, struct keeper *k, const char *name,
    int64_t *token, int *revoked)
{
	struct lock_wait w = { .x = xw };
	pthread_t t;
	int rc;

	*revoked = 0;
	platform__sync__v1__lock_request__init(&w.req);
	w.req.name = (char *)name;
	w.req.lease_id = k->lease;
	if (pthread_create(&t, NULL, lock_wait_run, &w) != 0) {
		fprintf(stderr, PROG ": sync: cannot start a thread\n");
		exit(CTL_FAIL);
	}
	while (!atomic_load(&w.done)) {
		if (!*revoked && (ctl_stop || atomic_load(&k->lost))) {
			(void)lease_revoke(k->x, k->lease);
			*revoked = 1;
		}
		sleep_ms(CHILD_POLL_MS);
	}
	pthread_join(t, NULL);
	if (w.m != NULL && w.code == 0)
		*token = ((Platform__Sync__V1__LockResponse *)w.m)->token;
	if (w.m != NULL)
		protobuf_c_message_free_unpacked(w.m, NULL);
	if (ctl_stop) {
		fprintf(stderr, PROG ": sync lock %s: interrupted while "
		    "waiting; lease %" PRId64 " revoked\n", name, k->lease);
		*revoked = 1;
		return 128 + ctl_stop;
	}
	if (atomic_load(&k->lost))
		fprintf(stderr, PROG ": sync lock %s: %s\n", name, k->why);
	if (w.code != 0)
		return ctl_fail(ctl_method_name(M_LOCK), w.code, w.err);
	if ((rc = atomic_load(&k->lost) ? CTL_FAIL : CTL_OK) != CTL_OK)
		*revoked = 1;
	return rc;
}

static int
sy_lock(const struct ctl_run *x, int argc, char **argv)
{
	const struct sy_flags *f = sy_f(x);
	Platform__Sync__V1__GrantRequest greq =
	    PLATFORM__SYNC__V1__GRANT_REQUEST__INIT;
	Platform__Sync__V1__UnlockRequest ureq =
	    PLATFORM__SYNC__V1__UNLOCK_REQUEST__INIT;
	struct sy_flags fa = { 0 };
	struct ctl_globals gw = *x->g;
	struct ctl_run xa = *x, xw;
	struct keeper k = { .x = &xa };
	ProtobufCMessage *m = NULL;
	int64_t ttl, wait;
	int64_t token = 0;
	int rc, revoked = 0;

	if ((rc = duration_of("--ttl", "100ms..24h", f->ttl, TTL_MIN_MS,
	    TTL_MAX_MS, TTL_DEFAULT_MS, &ttl)) != 0 ||
	    (rc = duration_of("--wait", "1ms..24d", f->wait, 1, INT_MAX,
	    INT_MAX, &wait)) != 0)
		return rc;
	/* The keeper's streams need an address; every call goes there, so
	 * that one replica sees the whole of it. */
	if (ctl_service_address(x->g, SYNC_SERVICE, f->sync, &k.addr) != 0)
		return CTL_FAIL;
	fa.sync = k.addr;
	xa.flags = &fa;
	/* The Lock call waits up to --wait: its deadline. */
	gw.timeout_ms = (int)wait;
	xw = xa;
	xw.g = &gw;

	greq.ttl_ms = ttl;
	k.renewed = plat_now_ms();
	if ((rc = sy_call(&xa, M_GRANT, &greq.base,
	    &platform__sync__v1__grant_response__descriptor, &m, 0)) !=
	    CTL_OK)
		goto out;
	k.lease = ((Platform__Sync__V1__GrantResponse *)m)->lease_id;
	k.ttl_ms = ((Platform__Sync__V1__GrantResponse *)m)->ttl_ms;
	protobuf_c_message_free_unpacked(m, NULL);
	keeper_start(&k);

	ctl_catch_signals();
	if ((rc = lock_wait(&xw, &k, argv[0], &token, &revoked)) == CTL_OK)
		rc = argc > 1 ? cmd_run(argv[0], &k, token, argv + 1) :
		    hold(&xa, argv[0], &k, token);
	keeper_stop(&k);
	if (!revoked && !atomic_load(&k.lost)) {
		ureq.name = argv[0];
		ureq.lease_id = k.lease;
		/* Revoke releases it too: each says on stderr if it failed,
		 * and the lease lapses by itself at worst. */
		(void)sy_call_drop(&xa, M_UNLOCK, &ureq.base,
		    &platform__sync__v1__unlock_response__descriptor);
		(void)lease_revoke(&xa, k.lease);
	}
out:
	free(k.addr);
	return rc;
}

/* ---- leader, observe ---- */

static json_t *
leader_json(const char *election, const pb_leader *l)
{
	json_t *o;
	char *v;
	int text;

	if (l == NULL)
		return json_pack("{s:o, s:n}", "election", ctl_jstr(election),
		    "leader");
	v = ctl_bytes_text(&l->value, &text);
	o = json_pack("{s:o, s:I, s:I, s:o}", "election", ctl_jstr(election),
	    "lease_id", (json_int_t)l->lease_id, "token", (json_int_t)l->token,
	    text ? "value" : "value_base64", ctl_jstr(text ? v : v + 4));
	free(v);
	return o;
}

/* "NAME lease=7 token=12 value=host-a", or "NAME no leader". */
static int
leader_out(const struct ctl_run *x, const char *election, const pb_leader *l)
{
	char *v;
	int text;

	if (x->g->json)
		return ctl_json_print(leader_json(election, l), JSON_COMPACT);
	if (l == NULL) {
		ctl_put_line(stdout, "%s no leader", election);
		return CTL_OK;
	}
	v = ctl_bytes_text(&l->value, &text);
	ctl_put_line(stdout, "%s lease=%" PRId64 " token=%" PRId64 " value=%s",
	    election, l->lease_id, l->token, v);
	free(v);
	return CTL_OK;
}

static int
sy_leader(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Sync__V1__LeaderRequest req =
	    PLATFORM__SYNC__V1__LEADER_REQUEST__INIT;
	const pb_leader *l;
	ProtobufCMessage *m = NULL;
	char *msg;
	int rc;

	req.election = argv[0];
	if ((rc = sy_call(x, M_LEADER, &req.base,
	    &platform__sync__v1__leader_response__descriptor, &m, 1)) !=
	    CTL_OK)
		return rc;
	l = ((Platform__Sync__V1__LeaderResponse *)m)->leader;
	if (l != NULL)
		rc = leader_out(x, argv[0], l);
	else {
		/* As kv get says a missing key: a script tests $?. */
		if (asprintf(&msg, "election \"%s\" has no leader",
		    argv[0]) < 0)
			abort();
		rc = ctl_fail(ctl_method_name(M_LEADER), PLAT_NOT_FOUND, msg);
		free(msg);
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

struct observe_state {
	const struct ctl_run *x;
	const char *election;
};

static int
observe_msg(void *arg, const ProtobufCMessage *m)
{
	const Platform__Sync__V1__ObserveResponse *r = (const void *)m;
	const struct observe_state *o = arg;

	if (leader_out(o->x, o->election, r->leader) != CTL_OK)
		return CTL_FAIL;
	/* The reader went away (a closed pipe): nothing left to do. */
	return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

static int
sy_observe(const struct ctl_run *x, int argc, char **argv)
{
	Platform__Sync__V1__ObserveRequest req =
	    PLATFORM__SYNC__V1__OBSERVE_REQUEST__INIT;
	struct observe_state o = { x, argv[0] };
	char *addr;
	int rc;

	req.election = argv[0];
	if (ctl_service_address(x->g, SYNC_SERVICE, sy_f(x)->sync, &addr) != 0)
		return CTL_FAIL;
	rc = ctl_stream(x->g, addr, M_OBSERVE, &req.base,
	    &platform__sync__v1__observe_response__descriptor, observe_msg,
	    &o);
	free(addr);
	return rc;
}

/* ---- the command table ---- */

#define F(name, flag, cmds, arg, help) { flag, NULL, CTL_VALUE, arg, NULL, \
	cmds, help, offsetof(struct sy_flags, name) }

static const struct ctl_flag sy_flags[] = {
	{ "--sync", NULL, CTL_VALUE, "ADDR", "PLATFORM_SYNC", NULL,
	    "sync-srv host:port (default: \"sync\" in discovery)",
	    offsetof(struct sy_flags, sync) },
	F(ttl, "--ttl", "lock", "DURATION",
	    "the lease's TTL (default 10s; 100ms..24h)"),
	F(wait, "--wait", "lock", "DURATION",
	    "wait at most this long for the lock (default: no limit)"),
};

#undef F

static const struct ctl_cmd sy_cmds[] = {
	{ "sync", NULL, "COMMAND ...", 0, 0, NULL,
	    "sync-srv: leases, lock, leader, observe ('sync help')" },
	{ "sync", "leases", "LEASE_ID...", 1, CTL_LIST_MAX, sy_leases,
	    "the TTL and time left of leases" },
	{ "sync", "lock", "NAME [-- CMD [ARG...]]", 1, INT_MAX, sy_lock,
	    "run CMD holding lock NAME, its token in $" ENV_TOKEN },
	{ "sync", "leader", "ELECTION", 1, 1, sy_leader,
	    "print the leader of an election and its value" },
	{ "sync", "observe", "ELECTION", 1, 1, sy_observe,
	    "print the leader, then each change, until Ctrl-C" },
	{ "sync", "help", "", 0, 0, NULL, "show this help" },
};

static int
sy_check(const struct ctl_run *x)
{
	const char *a = sy_f(x)->sync;

	if (a != NULL && strchr(a, ':') == NULL)
		return usage_error("--sync must be host:port, not '%s'", a);
	return CTL_OK;
}

const struct ctl_group ctl_sync_group = {
	.name = "sync",
	.hint = "sync help",
	.head = "Usage: " PROG " sync COMMAND [ARGS] [options]\n\n"
	    "Locks, elections and leases of sync-srv.\n\nCommands:\n",
	.foot = "\nplatformctl's options apply too (" PROG " --help). "
	    "--sync ADDR may also come\nfrom PLATFORM_SYNC.\n"
	    "\nlock grants a lease (--ttl), waits for the lock in FIFO order "
	    "and runs CMD\nwith " ENV_TOKEN ", " ENV_NAME " and "
	    ENV_LEASE "\nin its environment, renewing the lease meanwhile. "
	    "A resource CMD writes to\nshould refuse a token lower than the "
	    "highest it has seen. When CMD ends the\nlock is released and "
	    "the exit status is CMD's. When the lease is lost CMD is\nkilled "
	    "(SIGTERM, then SIGKILL) and the status is 1. SIGTERM is passed "
	    "on to\nCMD. Ctrl-C while lock waits revokes the lease (exit 130). "
	    "Without CMD, lock\nprints the token and holds the lock until "
	    "Ctrl-C.\n"
	    "\nExit status: 0 ok, 1 a call failed (leader: no leader), 2 bad "
	    "usage.\n",
	.width = 30,
	.show_cmds = 1,
	.cmds = CTL_TABLE(sy_cmds),
	.flags = CTL_TABLE(sy_flags),
	.flags_size = sizeof(struct sy_flags),
	.check = sy_check,
};
