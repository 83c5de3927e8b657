/*
 * pg: PostgreSQL connection pool, statements, transactions, migrations and
 * LISTEN. See platform/pg.h.
 *
 * Every connection runs in libpq's non-blocking mode and every wait is a
 * poll() on its socket bounded by the caller's deadline: a call never
 * blocks longer than it was given, whatever the network does. A statement
 * still running at its deadline is cancelled on the server (PQcancel) and
 * given a grace period to answer; past that the connection is dropped.
 *
 * Outages: a connection found broken is closed and reopened on its next
 * use. A failed connect starts a pool-wide backoff (100 ms doubling to
 * 5 s) during which acquirers fail fast with UNAVAILABLE, and one warning
 * is logged per outage, with one info line when the database is back.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "platform/log.h"
#include "platform/pg.h"
#include "platform/clock.h"
#include "platform/errbuf.h"
#include "platform/xalloc.h"

#define PG_BACKOFF_MIN_MS	100
#define PG_BACKOFF_MAX_MS	5000
#define PG_CONNECT_MAX_MS	10000	/* one connect attempt at most */
#define PG_GRACE_MS		2000	/* after a cancel; floor for COMMIT */
#define PG_CLEANUP_MS		1000	/* ROLLBACK at release */
#define PG_TX_ATTEMPTS		3
#define PG_IDLE_READS		4	/* see conn_healthy */
/* First key of the migrations' advisory locks ("plat"); the second is
 * hashtext(component), or 0 for creating the table itself. The two-key
 * lock space does not overlap the bigint one services may use. */
#define PG_MIGRATE_LOCK_CLASS	"1886151028"
#define PG_NO_DEADLINE		INT64_MAX

/* A statement prepared on one connection. */
struct pg_stmt {
	struct pg_stmt	*next;
	char		*name;
	char		*sql;
};

struct pg_conn {
	struct pg_pool	*pool;		/* NULL for a listener's connection */
	PGconn		*pg;		/* NULL when closed */
	PGcancel	*cancel;
	struct pg_stmt	*stmts;		/* prepared on this pg */
	int		 stop_fd;	/* readable: stop waiting; or -1 */
	bool		 busy;		/* acquired */
	/* In pg_tx, before its first statement: BEGIN goes with that
	 * statement, in the same round trip. */
	bool		 begin_pending;
};

struct pg_pool {
	char		*conninfo;
	int		 size;
	struct pg_conn	*conns;
	pthread_mutex_t	 mu;		/* everything below and conns[].busy */
	pthread_cond_t	 freed;		/* a connection was released */
	bool		 down;		/* the outage is logged */
	bool		 probing;	/* one acquirer tries to connect */
	int		 backoff_ms;
	int64_t		 retry_at;	/* no connect before (monotonic ms) */
};

struct pg_listener {
	char		*conninfo;
	char		*channel;
	pg_notify_fn	 on_notify;
	pg_reconnect_fn	 on_reconnect;
	void		*arg;
	int		 stop_pipe[2];
	pthread_t	 thread;
};

/* ---- time and small helpers ---- */


/* Absolute deadline for a timeout, PG_NO_DEADLINE for none. */
int64_t
pg_deadline(int64_t timeout_ms)
{
	int64_t now = plat_now_ms();

	if (timeout_ms >= PG_NO_DEADLINE - now)
		return PG_NO_DEADLINE;
	return now + timeout_ms;
}

int64_t
pg_left(int64_t deadline)
{
	return deadline == PG_NO_DEADLINE ? PG_NO_DEADLINE :
	    deadline - plat_now_ms();
}

static int64_t
pg_min(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* libpq's messages end with a newline (sometimes several lines): keep the
 * first line for a log field. */
static void
pg_first_line(char *dst, size_t len, const char *msg)
{
	size_t n;

	if (msg == NULL)
		msg = "";
	n = strcspn(msg, "\n");
	if (n >= len)
		n = len - 1;
	memcpy(dst, msg, n);
	dst[n] = '\0';
}

static void
pg_secret_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

const char *
pg_code_message(enum plat_code code)
{
	switch (code) {
	case PLAT_OK:			return "ok";
	case PLAT_UNAVAILABLE:		return "database unavailable";
	case PLAT_DEADLINE_EXCEEDED:	return "database deadline exceeded";
	case PLAT_ALREADY_EXISTS:	return "already exists";
	case PLAT_ABORTED:		return "transaction conflict, retry";
	case PLAT_FAILED_PRECONDITION:	return "constraint violated";
	default:			return "internal database error";
	}
}

/*
 * Waits until fd is ready for events, stop_fd (if not -1) is readable, or
 * the deadline passes. 1: ready, 0: deadline, -1: stopped or poll failed.
 */
static int
pg_wait_fd(int fd, short events, int stop_fd, int64_t deadline)
{
	struct pollfd pfd[2] = {
		{ .fd = fd, .events = events },
		{ .fd = stop_fd, .events = POLLIN },
	};
	int64_t left;
	int n, timeout;

	for (;;) {
		left = pg_left(deadline);
		if (left <= 0)
			return 0;
		timeout = deadline == PG_NO_DEADLINE ? -1 :
		    (int)pg_min(left, INT_MAX);
		n = poll(pfd, stop_fd >= 0 ? 2 : 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			continue;	/* re-check the clock */
		if (stop_fd >= 0 && pfd[1].revents != 0)
			return -1;
		return 1;	/* POLLERR, POLLHUP too: libpq tells */
	}
}

/* ---- connecting ---- */

/* Notices (e.g. "relation already exists, skipping") would go to stderr
 * unformatted: route them to the log instead. */
static void
pg_notice(void *arg, const PGresult *res)
{
	char line[512];

	(void)arg;
	pg_first_line(line, sizeof(line), PQresultErrorMessage(res));
	log_debug("database notice", "message", line);
}

/*
 * Opens a connection without blocking past deadline (PQconnectdb would
 * wait for the kernel's TCP timeout on a silent host). Returns NULL with
 * the reason in why; *timed_out says the deadline was the reason.
 */
static PGconn *
pg_connect(const char *conninfo, int64_t deadline, int stop_fd,
    bool *timed_out, char *why, size_t whylen)
{
	/* Defaults first: settings in conninfo (expanded from dbname)
	 * override them. Keepalives find a dead peer of an idle
	 * connection (a listener) in about a minute. */
	static const char *const keys[] = {
		"client_encoding", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "dbname", NULL,
	};
	const char *values[] = { "UTF8", "30", "10", "3", conninfo, NULL };
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGconn *pg;
	int r;

	*timed_out = false;
	pg = PQconnectStartParams(keys, values, 1);
	if (pg == NULL) {
		errbuf_set(why, whylen, "out of memory");
		return NULL;
	}
	if (PQstatus(pg) == CONNECTION_BAD)
		goto fail;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED)
			goto fail;
		r = pg_wait_fd(PQsocket(pg),
		    st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
		    stop_fd, deadline);
		if (r == 0) {
			*timed_out = true;
			errbuf_set(why, whylen, "connect timed out");
			PQfinish(pg);
			return NULL;
		}
		if (r < 0) {
			errbuf_set(why, whylen, "connect stopped");
			PQfinish(pg);
			return NULL;
		}
		st = PQconnectPoll(pg);
	}
	if (PQsetnonblocking(pg, 1) != 0)
		goto fail;
	PQsetNoticeReceiver(pg, pg_notice, NULL);
	return pg;
fail:
	pg_first_line(why, whylen, PQerrorMessage(pg));
	PQfinish(pg);
	return NULL;
}

static void
stmts_free(struct pg_stmt *s)
{
	struct pg_stmt *next;

	for (; s != NULL; s = next) {
		next = s->next;
		free(s->name);
		free(s->sql);
		free(s);
	}
}

/* Closes the connection; its prepared statements go with it. */
static void
conn_close(struct pg_conn *c)
{
	if (c->cancel != NULL)
		PQfreeCancel(c->cancel);
	if (c->pg != NULL)
		PQfinish(c->pg);
	stmts_free(c->stmts);
	c->cancel = NULL;
	c->pg = NULL;
	c->stmts = NULL;
}

static void
conn_attach(struct pg_conn *c, PGconn *pg)
{
	c->pg = pg;
	c->cancel = PQgetCancel(pg);
}

/* ---- outage bookkeeping (pool) ---- */

/* The database went away: log once per outage. */
static void
pool_mark_down(struct pg_pool *p, const char *why)
{
	bool was_down;

	pthread_mutex_lock(&p->mu);
	was_down = p->down;
	p->down = true;
	pthread_mutex_unlock(&p->mu);
	if (!was_down)
		log_warn("database unavailable", "error", why);
}

/* The connection died under a statement: close it, and it is an outage
 * (or a restart) as far as anyone can tell. */
static void
conn_lost(struct pg_conn *c)
{
	char why[256];

	pg_first_line(why, sizeof(why),
	    c->pg != NULL ? PQerrorMessage(c->pg) : "connection closed");
	conn_close(c);
	if (c->pool != NULL)
		pool_mark_down(c->pool, why);
}

/* ---- waiting for results and mapping errors ---- */

/* Sends what libpq still buffers. 1: sent, 0: the deadline passed,
 * -1: the connection broke. */
static int
conn_flush(struct pg_conn *c, int64_t deadline)
{
	int r, sock = PQsocket(c->pg);

	while ((r = PQflush(c->pg)) != 0) {
		if (r < 0)
			return -1;
		r = pg_wait_fd(sock, POLLIN | POLLOUT, c->stop_fd, deadline);
		if (r <= 0)
			return r < 0 ? -1 : 0;
		if (!PQconsumeInput(c->pg))
			return -1;
	}
	return 1;
}

/*
 * Waits until PQgetResult would not block. At *deadline the statement
 * running is cancelled when cancel is set (once: *cancelled), and the
 * server gets PG_GRACE_MS more to answer. 1: ready, 0: the deadline (and
 * grace) passed, -1: the connection broke or was stopped.
 */
static int
conn_ready(struct pg_conn *c, int64_t *deadline, bool cancel,
    bool *cancelled)
{
	char buf[256] = "no cancel handle";
	int r, sock = PQsocket(c->pg);

	while (PQisBusy(c->pg)) {
		r = pg_wait_fd(sock, POLLIN, c->stop_fd, *deadline);
		if (r == 0 && cancel && !*cancelled) {
			/* Stops the statement and its locks; the answer is
			 * error 57014. */
			if (c->cancel == NULL ||
			    !PQcancel(c->cancel, buf, sizeof(buf)))
				log_debug("database cancel failed", "error",
				    buf);
			*cancelled = true;
			*deadline = plat_now_ms() + PG_GRACE_MS;
			continue;
		}
		if (r == 0)
			return 0;
		if (r < 0 || !PQconsumeInput(c->pg))
			return -1;
	}
	return 1;
}

/* Keeps the first error of a statement's results, else the last. */
static void
result_keep(PGresult **keep, PGresult *res)
{
	if (*keep != NULL && PQresultStatus(*keep) == PGRES_FATAL_ERROR)
		PQclear(res);
	else {
		PQclear(*keep);
		*keep = res;
	}
}

static bool
result_is_copy(const PGresult *res)
{
	/* Never issued here (a COPY in a migration): the protocol state is
	 * beyond repair. */
	return PQresultStatus(res) == PGRES_COPY_IN ||
	    PQresultStatus(res) == PGRES_COPY_OUT ||
	    PQresultStatus(res) == PGRES_COPY_BOTH;
}

/*
 * Sends what libpq still buffers and waits for the statement sent on c to
 * finish. Returns its result: the first error when several statements ran
 * (a migration), else the last result. At the deadline the statement is
 * cancelled when cancel is set, and the server gets PG_GRACE_MS to answer;
 * if nothing comes, the connection is closed and *timed_out set. NULL with
 * *timed_out false: the connection broke (PQstatus tells) or was stopped.
 */
static PGresult *
conn_wait(struct pg_conn *c, int64_t deadline, bool cancel, bool *timed_out)
{
	PGresult *res, *keep = NULL;
	bool cancelled = false;
	int r;

	*timed_out = false;
	if ((r = conn_flush(c, deadline)) <= 0)
		goto fail;	/* not even sent: nothing to cancel */
	for (;;) {
		if ((r = conn_ready(c, &deadline, cancel, &cancelled)) <= 0)
			goto fail;
		if ((res = PQgetResult(c->pg)) == NULL)
			break;
		if (result_is_copy(res)) {
			PQclear(res);
			r = -1;
			goto fail;
		}
		result_keep(&keep, res);
	}
	return keep;
fail:
	PQclear(keep);
	if (r == 0) {
		conn_close(c);
		*timed_out = true;
	}
	return NULL;
}

/* SQLSTATE (5 characters) or class (2) to gRPC code, first match wins. */
static const struct {
	const char	*state;
	enum plat_code	 code;
} pg_states[] = {
	{ "23505", PLAT_ALREADY_EXISTS },	/* unique_violation */
	{ "23",    PLAT_FAILED_PRECONDITION },	/* check, foreign key, ... */
	{ "40001", PLAT_ABORTED },		/* serialization_failure */
	{ "40P01", PLAT_ABORTED },		/* deadlock_detected */
	{ "55P03", PLAT_ABORTED },		/* lock_not_available */
	{ "57014", PLAT_DEADLINE_EXCEEDED },	/* query_canceled */
	{ "08",    PLAT_UNAVAILABLE },		/* connection exceptions */
	{ "57P01", PLAT_UNAVAILABLE },		/* admin_shutdown */
	{ "57P02", PLAT_UNAVAILABLE },		/* crash_shutdown */
	{ "57P03", PLAT_UNAVAILABLE },		/* cannot_connect_now */
	{ "53300", PLAT_UNAVAILABLE },		/* too_many_connections */
};

static enum plat_code
pg_code_of_state(const char *state)
{
	size_t i;

	if (state == NULL)
		return PLAT_INTERNAL;
	for (i = 0; i < sizeof(pg_states) / sizeof(pg_states[0]); i++)
		if (strncmp(state, pg_states[i].state,
		    strlen(pg_states[i].state)) == 0)
			return pg_states[i].code;
	return PLAT_INTERNAL;
}

/* An error result: its code, a message fit for the caller, and a log line
 * for what the caller must not see. */
static enum plat_code
conn_error(struct pg_conn *c, const PGresult *res, const char *what,
    char *err, size_t errlen)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *constraint =
	    PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
	enum plat_code code = pg_code_of_state(state);
	char msg[512];

	switch (code) {
	case PLAT_ALREADY_EXISTS:
	case PLAT_FAILED_PRECONDITION:
		if (constraint != NULL) {
			errbuf_set(err, errlen, "%s (%s)",
			    pg_code_message(code), constraint);
			break;
		}
		/* FALLTHROUGH */
	case PLAT_ABORTED:
	case PLAT_DEADLINE_EXCEEDED:
		errbuf_set(err, errlen, "%s", pg_code_message(code));
		break;
	case PLAT_UNAVAILABLE:
		/* The server is going away (shutdown, restart, no slots):
		 * the connection is done for. */
		conn_lost(c);
		errbuf_set(err, errlen, "%s", pg_code_message(code));
		break;
	default:
		pg_first_line(msg, sizeof(msg),
		    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
		log_error("database error", "statement", what,
		    "sqlstate", state, "error", msg);
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		code = PLAT_INTERNAL;
	}
	return code;
}

/*
 * The outcome of a statement as a gRPC code. res is what conn_wait
 * returned; it stays the caller's.
 */
static enum plat_code
conn_check(struct pg_conn *c, const PGresult *res, bool timed_out,
    const char *what, char *err, size_t errlen)
{
	if (timed_out) {
		errbuf_set(err, errlen, "%s",
		    pg_code_message(PLAT_DEADLINE_EXCEEDED));
		return PLAT_DEADLINE_EXCEEDED;
	}
	/* No result at all: the connection broke (libpq may not have
	 * noticed yet, as after a failed write), or a listener was
	 * stopped. Either way this connection is done with. */
	if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK ||
	    res == NULL) {
		conn_lost(c);
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
	case PGRES_EMPTY_QUERY:
		return PLAT_OK;
	default:
		return conn_error(c, res, what, err, errlen);
	}
}

/* A command sent with the simple query protocol (BEGIN, COMMIT, a
 * migration's statements): never with values, so nothing to bind. what
 * names it in a log line. */
static enum plat_code
conn_command(struct pg_conn *c, const char *what, const char *sql,
    int64_t deadline, bool cancel, PGresult **result, char *err,
    size_t errlen)
{
	PGresult *res = NULL;
	enum plat_code code;
	bool timed_out = false;

	if (result != NULL)
		*result = NULL;
	if (c->pg == NULL) {
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	if (PQsendQuery(c->pg, sql))
		res = conn_wait(c, deadline, cancel, &timed_out);
	code = conn_check(c, res, timed_out, what, err, errlen);
	if (code == PLAT_OK && result != NULL)
		*result = res;
	else
		PQclear(res);
	return code;
}

/* ---- prepared statements ---- */

static struct pg_stmt *
stmt_find(const struct pg_conn *c, const char *name)
{
	struct pg_stmt *s;

	for (s = c->stmts; s != NULL; s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static void
stmt_add(struct pg_conn *c, const char *name, const char *sql)
{
	struct pg_stmt *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		abort();
	s->name = xstrdup(name);
	s->sql = xstrdup(sql);
	s->next = c->stmts;
	c->stmts = s;
}

/* Prepares name on this connection unless it already is. Parameter types
 * are left to the server to infer. */
static enum plat_code
conn_prepare(struct pg_conn *c, const char *name, const char *sql,
    int64_t deadline, char *err, size_t errlen)
{
	struct pg_stmt *s;
	PGresult *res = NULL;
	enum plat_code code;
	bool timed_out = false;

	if ((s = stmt_find(c, name)) != NULL) {
		if (strcmp(s->sql, sql) == 0)
			return PLAT_OK;
		/* Running the other statement would be a silent bug. */
		log_error("database statement name reused with other SQL",
		    "statement", name);
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	if (PQsendPrepare(c->pg, name, sql, 0, NULL))
		res = conn_wait(c, deadline, true, &timed_out);
	code = conn_check(c, res, timed_out, name, err, errlen);
	PQclear(res);
	if (code == PLAT_OK)
		stmt_add(c, name, sql);
	return code;
}

enum plat_code
pg_exec(struct pg_conn *c, const char *name, const char *sql, int nparams,
    const char *const *values, const int *lengths, const int *formats,
    int64_t timeout_ms, PGresult **result, char *err, size_t errlen)
{
	int64_t deadline = pg_deadline(timeout_ms);
	PGresult *res = NULL;
	enum plat_code code;
	bool timed_out = false;

	if (result != NULL)
		*result = NULL;
	if (name == NULL || name[0] == '\0' || sql == NULL || nparams < 0) {
		/* A bug in the server. The unnamed statement in particular
		 * would be replaced behind the cache's back. */
		log_error("database statement without a name or SQL",
		    "statement", name);
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	if (timeout_ms <= 0) {
		errbuf_set(err, errlen, "%s",
		    pg_code_message(PLAT_DEADLINE_EXCEEDED));
		return PLAT_DEADLINE_EXCEEDED;
	}
	if (c->pg == NULL) {	/* lost earlier in this acquisition */
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	if (c->begin_pending) {
		struct pg_query q = { name, sql, nparams, values, lengths,
		    formats, NULL };

		code = pg_pipeline(c, &q, 1, timeout_ms, err, errlen);
		if (result != NULL)
			*result = q.result;
		else
			PQclear(q.result);
		return code;
	}
	code = conn_prepare(c, name, sql, deadline, err, errlen);
	if (code != PLAT_OK)
		return code;
	if (PQsendQueryPrepared(c->pg, name, nparams, values, lengths,
	    formats, 0))
		res = conn_wait(c, deadline, true, &timed_out);
	code = conn_check(c, res, timed_out, name, err, errlen);
	if (code == PLAT_OK && result != NULL)
		*result = res;
	else
		PQclear(res);
	return code;
}

enum plat_code
pg_exec_dynamic(struct pg_conn *c, const char *sql, int nparams,
    const char *const *values, int64_t timeout_ms, PGresult **result,
    char *err, size_t errlen)
{
	int64_t deadline = pg_deadline(timeout_ms);
	PGresult *res = NULL;
	enum plat_code code;
	bool timed_out = false;

	if (result != NULL)
		*result = NULL;
	if (sql == NULL || nparams < 0 || c->begin_pending) {
		log_error("database dynamic statement misused");
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		return PLAT_INTERNAL;
	}
	if (timeout_ms <= 0) {
		errbuf_set(err, errlen, "%s",
		    pg_code_message(PLAT_DEADLINE_EXCEEDED));
		return PLAT_DEADLINE_EXCEEDED;
	}
	if (c->pg == NULL) {
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	if (PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL,
	    0))
		res = conn_wait(c, deadline, true, &timed_out);
	code = conn_check(c, res, timed_out, "dynamic statement", err,
	    errlen);
	if (code == PLAT_OK && result != NULL)
		*result = res;
	else
		PQclear(res);
	return code;
}

/* ---- pipelines ---- */

/* What one entry of a pipeline sent, to read its answer. */
enum pipe_kind { PIPE_BEGIN, PIPE_PREPARE, PIPE_QUERY, PIPE_COMMIT };

struct pipe_sent {
	enum pipe_kind kind;
	size_t q;               /* PIPE_PREPARE, PIPE_QUERY: its query */
};

/* The query before q[i] with its name, or NULL. */
static const struct pg_query *
pipe_earlier(const struct pg_query *q, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(q[j].name, q[i].name) == 0)
			return &q[j];
	return NULL;
}

/* Queues q[0..n) (each prepared first unless it is on this connection),
 * with BEGIN first and COMMIT last when asked; 0, or -1 when libpq
 * refused (the connection broke). */
static int
pipe_send(struct pg_conn *c, const struct pg_query *q, size_t n,
    bool begin, bool commit, struct pipe_sent *sent, size_t *nsent)
{
	*nsent = 0;
	if (begin) {
		if (!PQsendQueryParams(c->pg, "BEGIN", 0, NULL, NULL, NULL,
		    NULL, 0))
			return -1;
		sent[(*nsent)++] = (struct pipe_sent){ PIPE_BEGIN, 0 };
	}
	for (size_t i = 0; i < n; i++) {
		if (stmt_find(c, q[i].name) == NULL &&
		    pipe_earlier(q, i) == NULL) {
			if (!PQsendPrepare(c->pg, q[i].name, q[i].sql, 0, NULL))
				return -1;
			sent[(*nsent)++] = (struct pipe_sent){ PIPE_PREPARE,
			    i };
		}
		if (!PQsendQueryPrepared(c->pg, q[i].name, q[i].nparams,
		    q[i].values, q[i].lengths, q[i].formats, 0))
			return -1;
		sent[(*nsent)++] = (struct pipe_sent){ PIPE_QUERY, i };
	}
	if (commit) {
		if (!PQsendQueryParams(c->pg, "COMMIT", 0, NULL, NULL, NULL,
		    NULL, 0))
			return -1;
		sent[(*nsent)++] = (struct pipe_sent){ PIPE_COMMIT, 0 };
	}
	return PQpipelineSync(c->pg) ? 0 : -1;
}

static const char *
pipe_what(const struct pg_query *q, const struct pipe_sent *s)
{
	switch (s->kind) {
	case PIPE_BEGIN:
		return "BEGIN";
	case PIPE_COMMIT:
		return "COMMIT";
	default:
		return q[s->q].name;
	}
}

/*
 * Reads the answers of what pipe_send queued, in order, then the sync.
 * The first failure is the outcome (the statements after it answer
 * PGRES_PIPELINE_ABORTED, not errors of their own). 1: read through (the
 * code in *code), 0 or -1: as conn_ready, the connection is done for.
 */
static int
pipe_read(struct pg_conn *c, struct pg_query *q, const struct pipe_sent *sent,
    size_t nsent, int64_t deadline, bool cancel, enum plat_code *code,
    char *err, size_t errlen)
{
	PGresult *res, *keep;
	bool cancelled = false;
	int r;

	*code = PLAT_OK;
	for (size_t k = 0; k < nsent; k++) {
		const struct pipe_sent *s = &sent[k];

		keep = NULL;
		for (;;) {
			if ((r = conn_ready(c, &deadline, cancel,
			    &cancelled)) <= 0) {
				PQclear(keep);
				return r;
			}
			if ((res = PQgetResult(c->pg)) == NULL)
				break;
			if (result_is_copy(res)) {
				PQclear(res);
				PQclear(keep);
				return -1;
			}
			result_keep(&keep, res);
		}
		if (*code != PLAT_OK) {         /* skipped after a failure */
			PQclear(keep);
			continue;
		}
		*code = conn_check(c, keep, false, pipe_what(q, s), err,
		    errlen);
		if (*code != PLAT_OK) {
			PQclear(keep);
			if (c->pg == NULL)      /* conn_check closed it */
				return -1;
			continue;
		}
		switch (s->kind) {
		case PIPE_PREPARE:
			stmt_add(c, q[s->q].name, q[s->q].sql);
			PQclear(keep);
			break;
		case PIPE_QUERY:
			q[s->q].result = keep;
			break;
		case PIPE_COMMIT:
			/* As pg_commit: a failed transaction answers
			 * ROLLBACK. */
			if (strcmp(PQcmdStatus(keep), "COMMIT") != 0) {
				log_error("database commit of a failed "
				    "transaction", "result", PQcmdStatus(keep));
				errbuf_set(err, errlen, "%s",
				    pg_code_message(PLAT_INTERNAL));
				*code = PLAT_INTERNAL;
			}
			PQclear(keep);
			break;
		default:
			PQclear(keep);
		}
	}
	if ((r = conn_ready(c, &deadline, cancel, &cancelled)) <= 0)
		return r;
	res = PQgetResult(c->pg);
	r = res != NULL && PQresultStatus(res) == PGRES_PIPELINE_SYNC ? 1 : -1;
	PQclear(res);
	return r;
}

/* pg_pipeline and pg_pipeline_commit; begin when a pg_tx starts. */
static enum plat_code
conn_pipeline(struct pg_conn *c, struct pg_query *q, size_t n, bool commit,
    int64_t timeout_ms, char *err, size_t errlen)
{
	bool begin = c->begin_pending;
	int64_t deadline = pg_deadline(timeout_ms);
	struct pipe_sent *sent;
	enum plat_code code = PLAT_OK;
	size_t nsent;
	int r;

	for (size_t i = 0; i < n; i++)
		q[i].result = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct pg_stmt *st;
		const struct pg_query *e;

		if (q[i].name == NULL || q[i].name[0] == '\0' ||
		    q[i].sql == NULL || q[i].nparams < 0 ||
		    ((st = stmt_find(c, q[i].name)) != NULL &&
		    strcmp(st->sql, q[i].sql) != 0) ||
		    ((e = pipe_earlier(q, i)) != NULL &&
		    strcmp(e->sql, q[i].sql) != 0)) {
			log_error("database statement without a name or SQL, "
			    "or its name reused with other SQL", "statement",
			    q[i].name);
			errbuf_set(err, errlen, "%s",
			    pg_code_message(PLAT_INTERNAL));
			return PLAT_INTERNAL;
		}
	}
	if (timeout_ms <= 0) {
		errbuf_set(err, errlen, "%s",
		    pg_code_message(PLAT_DEADLINE_EXCEEDED));
		return PLAT_DEADLINE_EXCEEDED;
	}
	if (c->pg == NULL) {
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_UNAVAILABLE));
		return PLAT_UNAVAILABLE;
	}
	/* As pg_commit: a commit cut short costs the connection and leaves
	 * its outcome unknown, so it gets at least PG_GRACE_MS. */
	if (commit && timeout_ms < PG_GRACE_MS)
		deadline = pg_deadline(PG_GRACE_MS);
	c->begin_pending = false;
	sent = xcalloc(2 * n + 2, sizeof(*sent));
	if (!PQenterPipelineMode(c->pg) ||
	    pipe_send(c, q, n, begin, commit, sent, &nsent) != 0)
		r = -1;
	else if ((r = conn_flush(c, deadline)) > 0)
		r = pipe_read(c, q, sent, nsent, deadline, true, &code, err,
		    errlen);
	free(sent);
	if (r > 0 && !PQexitPipelineMode(c->pg))
		r = -1;
	if (r <= 0) {
		if (r == 0)
			conn_close(c);
		code = conn_check(c, NULL, r == 0, "pipeline", err, errlen);
	}
	if (code != PLAT_OK)
		for (size_t i = 0; i < n; i++) {
			PQclear(q[i].result);
			q[i].result = NULL;
		}
	return code;
}

enum plat_code
pg_pipeline(struct pg_conn *c, struct pg_query *q, size_t n,
    int64_t timeout_ms, char *err, size_t errlen)
{
	return conn_pipeline(c, q, n, false, timeout_ms, err, errlen);
}

enum plat_code
pg_pipeline_commit(struct pg_conn *c, struct pg_query *q, size_t n,
    int64_t timeout_ms, char *err, size_t errlen)
{
	return conn_pipeline(c, q, n, true, timeout_ms, err, errlen);
}

/* ---- transactions ---- */

enum plat_code
pg_begin(struct pg_conn *c, int64_t timeout_ms, char *err, size_t errlen)
{
	if (timeout_ms <= 0) {
		errbuf_set(err, errlen, "%s",
		    pg_code_message(PLAT_DEADLINE_EXCEEDED));
		return PLAT_DEADLINE_EXCEEDED;
	}
	return conn_command(c, "BEGIN", "BEGIN", pg_deadline(timeout_ms), true,
	    NULL, err, errlen);
}

enum plat_code
pg_commit(struct pg_conn *c, int64_t timeout_ms, char *err, size_t errlen)
{
	PGresult *res;
	enum plat_code code;

	/* Past the deadline, do not commit at all: then the outcome is
	 * known (nothing), and release rolls back. */
	if (timeout_ms <= 0) {
		errbuf_set(err, errlen, "%s",
		    pg_code_message(PLAT_DEADLINE_EXCEEDED));
		return PLAT_DEADLINE_EXCEEDED;
	}
	/* A commit cannot be cancelled and cutting it short costs the
	 * connection and leaves its outcome unknown: give it at least
	 * PG_GRACE_MS. */
	code = conn_command(c, "COMMIT", "COMMIT",
	    pg_deadline(timeout_ms > PG_GRACE_MS ? timeout_ms : PG_GRACE_MS),
	    false, &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	/* COMMIT of a transaction that failed earlier answers ROLLBACK,
	 * without an error. */
	if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		log_error("database commit of a failed transaction",
		    "result", PQcmdStatus(res));
		errbuf_set(err, errlen, "%s", pg_code_message(PLAT_INTERNAL));
		code = PLAT_INTERNAL;
	}
	PQclear(res);
	return code;
}

enum plat_code
pg_rollback(struct pg_conn *c, int64_t timeout_ms, char *err, size_t errlen)
{
	/* Clean-up does not depend on the caller's deadline. */
	if (timeout_ms < PG_CLEANUP_MS)
		timeout_ms = PG_CLEANUP_MS;
	return conn_command(c, "ROLLBACK", "ROLLBACK",
	    pg_deadline(timeout_ms), false, NULL, err, errlen);
}

/* A connection going back to the pool holds no transaction and runs no
 * statement; one that might is closed instead. */
static void
conn_settle(struct pg_conn *c)
{
	char err[128];

	if (c->pg == NULL)
		return;
	switch (PQtransactionStatus(c->pg)) {
	case PQTRANS_IDLE:
		return;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR:
		if (pg_rollback(c, PG_CLEANUP_MS, err, sizeof(err)) ==
		    PLAT_OK)
			return;
		break;
	default:	/* ACTIVE, UNKNOWN */
		break;
	}
	conn_close(c);
}

/* ---- the pool ---- */

int
pg_conninfo_check(const char *conninfo, char *err, size_t errlen)
{
	PQconninfoOption *opts;
	char *msg = NULL;

	if (conninfo == NULL || conninfo[0] == '\0') {
		errbuf_set(err, errlen, "empty connection string");
		return -1;
	}
	if ((opts = PQconninfoParse(conninfo, &msg)) == NULL) {
		pg_first_line(err, errlen, msg != NULL ? msg : "out of memory");
		PQfreemem(msg);
		return -1;
	}
	PQconninfoFree(opts);
	return 0;
}

int
pg_check_database(const struct plat_settings *s, char *err, size_t errlen)
{
	char why[512];

	if (s->database == NULL || s->database[0] == '\0') {
		snprintf(err, errlen, "--database (PLATFORM_DATABASE) is "
		    "required");
		return -1;
	}
	if (pg_conninfo_check(s->database, why, sizeof(why)) != 0) {
		/* libpq may quote the string, password and all, after the
		 * last ': "': cut it off. */
		char *q = NULL, *p;

		for (p = why; (p = strstr(p, ": \"")) != NULL; p++)
			q = p;
		if (q != NULL)
			*q = '\0';
		why[strcspn(why, "\n")] = '\0';
		snprintf(err, errlen, "--database: not a valid connection "
		    "string (%s)", why);
		return -1;
	}
	return 0;
}

struct pg_pool *
pg_pool_new(const char *conninfo, int size)
{
	struct pg_pool *p;
	char err[256];
	int i;

	if (size < 1) {
		log_error("database pool size must be at least 1");
		return NULL;
	}
	if (pg_conninfo_check(conninfo, err, sizeof(err)) != 0) {
		log_error("database connection string invalid", "error", err);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	if ((p->conns = calloc((size_t)size, sizeof(*p->conns))) == NULL)
		goto fail;
	p->conninfo = xstrdup(conninfo);
	p->size = size;
	for (i = 0; i < size; i++) {
		p->conns[i].pool = p;
		p->conns[i].stop_fd = -1;
	}
	pthread_mutex_init(&p->mu, NULL);
	/* Waits are bounded by monotonic deadlines. */
	plat_cond_init(&p->freed);
	return p;
fail:
	free(p->conns);
	free(p);
	return NULL;
}

void
pg_pool_free(struct pg_pool *p)
{
	int i;

	if (p == NULL)
		return;
	for (i = 0; i < p->size; i++)
		conn_close(&p->conns[i]);
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->mu);
	pg_secret_free(p->conninfo);
	free(p->conns);
	free(p);
}

/* A free connection, an open one first so the pool grows only under load.
 * Called with mu held. */
static struct pg_conn *
pool_take(struct pg_pool *p)
{
	struct pg_conn *closed = NULL;
	int i;

	for (i = 0; i < p->size; i++) {
		if (p->conns[i].busy)
			continue;
		if (p->conns[i].pg != NULL) {
			p->conns[i].busy = true;
			return &p->conns[i];
		}
		if (closed == NULL)
			closed = &p->conns[i];
	}
	if (closed != NULL)
		closed->busy = true;
	return closed;
}

/* Waits for a release until deadline; ETIMEDOUT past it. mu held. */
static int
pool_wait(struct pg_pool *p, int64_t deadline)
{
	struct timespec ts;

	if (deadline == PG_NO_DEADLINE)
		return pthread_cond_wait(&p->freed, &p->mu);
	ts.tv_sec = deadline / 1000;
	ts.tv_nsec = (deadline % 1000) * 1000000;
	return pthread_cond_timedwait(&p->freed, &p->mu, &ts);
}

static void
pool_put(struct pg_pool *p, struct pg_conn *c)
{
	pthread_mutex_lock(&p->mu);
	c->busy = false;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->mu);
}

/*
 * An idle connection should have nothing to read. When the server shut
 * down or restarted, its socket holds a FATAL message and end-of-file:
 * reading them here turns a stale connection into a quiet reconnect
 * instead of a failed call. Asynchronous messages (parameter changes) are
 * consumed too, up to PG_IDLE_READS times.
 */
static bool
conn_healthy(struct pg_conn *c)
{
	struct pollfd pfd;
	int i;

	if (c->pg == NULL)
		return false;
	pfd.fd = PQsocket(c->pg);
	pfd.events = POLLIN;
	for (i = 0; i < PG_IDLE_READS; i++) {
		if (PQstatus(c->pg) != CONNECTION_OK)
			break;
		pfd.revents = 0;
		if (poll(&pfd, 1, 0) <= 0)
			return true;
		if (!PQconsumeInput(c->pg))
			break;
	}
	if (PQstatus(c->pg) == CONNECTION_OK)
		return true;
	conn_close(c);
	return false;
}

/*
 * Opens c for an acquirer. During an outage (a connect failed) only one
 * acquirer at a time tries, and only once the backoff has passed; the
 * others fail fast, so a dead database costs callers no waiting.
 */
static enum plat_code
pool_connect(struct pg_pool *p, struct pg_conn *c, int64_t deadline)
{
	int64_t limit = pg_min(deadline, pg_deadline(PG_CONNECT_MAX_MS));
	bool probing, timed_out, was_down;
	char why[256];
	PGconn *pg;

	pthread_mutex_lock(&p->mu);
	if (p->down && (p->probing || plat_now_ms() < p->retry_at)) {
		pthread_mutex_unlock(&p->mu);
		return PLAT_UNAVAILABLE;
	}
	probing = p->down;
	p->probing = probing;
	pthread_mutex_unlock(&p->mu);

	pg = pg_connect(p->conninfo, limit, -1, &timed_out, why, sizeof(why));

	pthread_mutex_lock(&p->mu);
	if (probing)
		p->probing = false;
	if (pg == NULL && timed_out && limit == deadline) {
		/* The caller's deadline ran out, not the database. */
		pthread_mutex_unlock(&p->mu);
		return PLAT_DEADLINE_EXCEEDED;
	}
	if (pg == NULL) {
		p->backoff_ms = p->backoff_ms == 0 ? PG_BACKOFF_MIN_MS :
		    (int)pg_min(p->backoff_ms * 2, PG_BACKOFF_MAX_MS);
		p->retry_at = plat_now_ms() + p->backoff_ms;
		was_down = p->down;
		p->down = true;
		pthread_mutex_unlock(&p->mu);
		if (!was_down)
			log_warn("database unavailable", "error", why);
		return PLAT_UNAVAILABLE;
	}
	p->backoff_ms = 0;
	was_down = p->down;
	p->down = false;
	pthread_mutex_unlock(&p->mu);
	if (was_down)
		log_info("database available again");
	conn_attach(c, pg);
	return PLAT_OK;
}

enum plat_code
pg_acquire(struct pg_pool *p, int64_t timeout_ms, struct pg_conn **out)
{
	int64_t deadline = pg_deadline(timeout_ms);
	struct pg_conn *c;
	enum plat_code code;

	*out = NULL;
	if (timeout_ms <= 0)
		return PLAT_DEADLINE_EXCEEDED;
	pthread_mutex_lock(&p->mu);
	while ((c = pool_take(p)) == NULL) {
		if (pool_wait(p, deadline) == ETIMEDOUT) {
			pthread_mutex_unlock(&p->mu);
			return PLAT_DEADLINE_EXCEEDED;
		}
	}
	pthread_mutex_unlock(&p->mu);

	if (conn_healthy(c)) {
		*out = c;
		return PLAT_OK;
	}
	if ((code = pool_connect(p, c, deadline)) != PLAT_OK) {
		pool_put(p, c);
		return code;
	}
	*out = c;
	return PLAT_OK;
}

void
pg_release(struct pg_pool *p, struct pg_conn *c)
{
	if (c == NULL)
		return;
	conn_settle(c);
	pool_put(p, c);
}

/* ---- whole transactions ---- */

/*
 * One attempt: BEGIN, fn, COMMIT, or ROLLBACK when anything failed. BEGIN
 * waits for fn's first statement and goes in the same round trip; fn may
 * commit with its last (pg_pipeline_commit), leaving nothing to do here.
 */
static enum plat_code
tx_once(struct pg_conn *c, int64_t deadline, pg_tx_fn fn, void *arg,
    char *err, size_t errlen)
{
	enum plat_code code;
	char ignored[128];
	bool open;

	if (pg_left(deadline) <= 0) {
		errbuf_set(err, errlen, "%s",
		    pg_code_message(PLAT_DEADLINE_EXCEEDED));
		return PLAT_DEADLINE_EXCEEDED;
	}
	c->begin_pending = true;
	code = fn(c, pg_left(deadline), arg, err, errlen);
	c->begin_pending = false;
	open = c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE;
	if (code == PLAT_OK)
		return open ? pg_commit(c, pg_left(deadline), err, errlen) :
		    PLAT_OK;
	/* fn's error is the one to report; release closes the connection
	 * if this fails too. */
	if (open)
		(void)pg_rollback(c, pg_left(deadline), ignored,
		    sizeof(ignored));
	return code;
}

enum plat_code
pg_tx(struct pg_pool *pool, int64_t timeout_ms, pg_tx_fn fn, void *arg,
    char *err, size_t errlen)
{
	int64_t deadline = pg_deadline(timeout_ms);
	struct pg_conn *c;
	enum plat_code code;
	int attempt;

	for (attempt = 1; ; attempt++) {
		code = pg_acquire(pool, pg_left(deadline), &c);
		if (code != PLAT_OK) {
			errbuf_set(err, errlen, "%s", pg_code_message(code));
			return code;
		}
		code = tx_once(c, deadline, fn, arg, err, errlen);
		pg_release(pool, c);
		if (code != PLAT_ABORTED || attempt == PG_TX_ATTEMPTS ||
		    pg_left(deadline) <= 0)
			return code;
		log_debug("database transaction conflict, retrying");
	}
}

/* ---- migrations ---- */

static const char pg_migrations_table_sql[] =
    "CREATE TABLE IF NOT EXISTS platform_schema_migrations ("
    " component text NOT NULL,"
    " version integer NOT NULL,"
    " name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (component, version))";

/* Creates the bookkeeping table. Servers of different components may do
 * this at the same moment, and two CREATE TABLE IF NOT EXISTS racing can
 * both try to create it (a unique violation in the catalog): a lock of
 * its own serialises them. */
static enum plat_code
migrate_table(struct pg_conn *c, char *err, size_t errlen)
{
	enum plat_code code;

	code = pg_begin(c, PG_NO_DEADLINE, err, errlen);
	if (code == PLAT_OK)
		code = pg_exec(c, "platform_migrate_table_lock",
		    "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK_CLASS
		    ", 0)", 0, NULL, NULL, NULL, PG_NO_DEADLINE, NULL, err,
		    errlen);
	if (code == PLAT_OK)
		code = conn_command(c, "platform_migrate_table",
		    pg_migrations_table_sql, PG_NO_DEADLINE, false, NULL, err,
		    errlen);
	if (code == PLAT_OK)
		return pg_commit(c, PG_NO_DEADLINE, err, errlen);
	return code;	/* release rolls back */
}

/* The component's applied version, 0 for none. */
static enum plat_code
migrate_current(struct pg_conn *c, const char *component, int *version,
    char *err, size_t errlen)
{
	const char *values[] = { component };
	PGresult *res;
	enum plat_code code;

	code = pg_exec(c, "platform_migrate_current",
	    "SELECT coalesce(max(version), 0) FROM platform_schema_migrations"
	    " WHERE component = $1", 1, values, NULL, NULL, PG_NO_DEADLINE,
	    &res, err, errlen);
	if (code != PLAT_OK)
		return code;
	*version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return PLAT_OK;
}

/* Applies m in the open transaction and records it. */
static enum plat_code
migrate_apply(struct pg_conn *c, const char *component,
    const struct pg_migration *m, char *err, size_t errlen)
{
	char version[16], what[128];
	const char *values[] = { component, version, m->name };
	enum plat_code code;

	snprintf(version, sizeof(version), "%d", m->version);
	snprintf(what, sizeof(what), "%s migration %d (%s)", component,
	    m->version, m->name);
	code = conn_command(c, what, m->sql, PG_NO_DEADLINE, false, NULL, err,
	    errlen);
	if (code != PLAT_OK) {
		/* The database's reason is in the log line just before. */
		errbuf_set(err, errlen,
		    "schema migration %d (%s) for %s failed: %s", m->version,
		    m->name, component, pg_code_message(code));
		return code;
	}
	return pg_exec(c, "platform_migrate_record",
	    "INSERT INTO platform_schema_migrations (component, version, name)"
	    " VALUES ($1, $2, $3)", 3, values, NULL, NULL, PG_NO_DEADLINE,
	    NULL, err, errlen);
}

/*
 * One transaction under the component's lock: read the applied version,
 * apply the next migration if there is one. Whoever waited for the lock
 * reads the version after the holder committed, so no migration runs
 * twice. *done: nothing was left to apply.
 */
static enum plat_code
migrate_step(struct pg_conn *c, const char *component,
    const struct pg_migration *ms, size_t n, bool *done, char *err,
    size_t errlen)
{
	const char *values[] = { component };
	int highest = n > 0 ? ms[n - 1].version : 0;
	enum plat_code code;
	char version[16];
	int current;
	size_t i;

	*done = false;
	if ((code = pg_begin(c, PG_NO_DEADLINE, err, errlen)) != PLAT_OK)
		return code;
	code = pg_exec(c, "platform_migrate_lock",
	    "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK_CLASS
	    ", hashtext($1))", 1, values, NULL, NULL, PG_NO_DEADLINE, NULL,
	    err, errlen);
	if (code != PLAT_OK)
		return code;
	if ((code = migrate_current(c, component, &current, err, errlen)) !=
	    PLAT_OK)
		return code;
	if (current > highest) {
		errbuf_set(err, errlen, "database schema for %s is at version "
		    "%d, newer than this server knows (%d)", component, current,
		    highest);
		return PLAT_FAILED_PRECONDITION;
	}
	for (i = 0; i < n && ms[i].version <= current; i++)
		;
	if (i == n) {
		*done = true;
		return pg_rollback(c, PG_NO_DEADLINE, err, errlen);
	}
	if ((code = migrate_apply(c, component, &ms[i], err, errlen)) !=
	    PLAT_OK)
		return code;
	if ((code = pg_commit(c, PG_NO_DEADLINE, err, errlen)) != PLAT_OK)
		return code;
	snprintf(version, sizeof(version), "%d", ms[i].version);
	log_info("schema migration applied", "component", component,
	    "version", version, "name", ms[i].name);
	return PLAT_OK;
}

/* Ascending versions from 1: anything else is a bug in the server. */
static int
migrations_valid(const struct pg_migration *ms, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (ms[i].version < 1 || ms[i].name == NULL ||
		    ms[i].sql == NULL)
			return 0;
		if (i > 0 && ms[i].version <= ms[i - 1].version)
			return 0;
	}
	return 1;
}

enum plat_code
pg_migrate(struct pg_pool *pool, const char *component,
    const struct pg_migration *migrations, size_t n, char *err,
    size_t errlen)
{
	struct pg_conn *c;
	enum plat_code code;
	bool done = false;

	if (component == NULL || component[0] == '\0' ||
	    !migrations_valid(migrations, n)) {
		errbuf_set(err, errlen, "schema migrations for %s are not in "
		    "ascending version order from 1",
		    component != NULL ? component : "(null)");
		return PLAT_INTERNAL;
	}
	if ((code = pg_acquire(pool, PG_NO_DEADLINE, &c)) != PLAT_OK) {
		errbuf_set(err, errlen, "%s", pg_code_message(code));
		return code;
	}
	code = migrate_table(c, err, errlen);
	while (code == PLAT_OK && !done)
		code = migrate_step(c, component, migrations, n, &done, err,
		    errlen);
	pg_release(pool, c);	/* rolls back a failed step */
	return code;
}

/* ---- LISTEN/NOTIFY ---- */

/* Sleeps ms unless stopped first; true when stopped. */
static bool
listener_sleep(struct pg_listener *l, int ms)
{
	struct pollfd pfd = { .fd = l->stop_pipe[0], .events = POLLIN };
	int64_t deadline = plat_now_ms() + ms, left;

	while ((left = pg_left(deadline)) > 0)
		if (poll(&pfd, 1, (int)left) > 0)
			return true;
	return false;
}

/* Connects and LISTENs. The channel is an identifier, which LISTEN cannot
 * take as a parameter: it is quoted by libpq, never spliced raw. */
static bool
listener_open(struct pg_listener *l, struct pg_conn *c, char *why,
    size_t whylen)
{
	bool timed_out;
	char *ident = NULL, *sql = NULL;
	PGconn *pg;
	enum plat_code code;
	size_t len;

	pg = pg_connect(l->conninfo, pg_deadline(PG_CONNECT_MAX_MS),
	    l->stop_pipe[0], &timed_out, why, whylen);
	if (pg == NULL)
		return false;
	conn_attach(c, pg);
	ident = PQescapeIdentifier(pg, l->channel, strlen(l->channel));
	if (ident == NULL)
		goto fail;
	len = strlen(ident) + sizeof("LISTEN ");
	if ((sql = malloc(len)) == NULL)
		goto fail;
	snprintf(sql, len, "LISTEN %s", ident);
	code = conn_command(c, "LISTEN", sql, pg_deadline(PG_CONNECT_MAX_MS),
	    true, NULL, why, whylen);
	if (code != PLAT_OK)
		goto fail;
	PQfreemem(ident);
	free(sql);
	return true;
fail:
	if (c->pg != NULL)
		pg_first_line(why, whylen, PQerrorMessage(c->pg));
	PQfreemem(ident);
	free(sql);
	conn_close(c);
	return false;
}

static void
listener_drain(struct pg_listener *l, PGconn *pg)
{
	PGnotify *n;

	while ((n = PQnotifies(pg)) != NULL) {
		l->on_notify(n->extra, l->arg);
		PQfreemem(n);
	}
}

/* Delivers notifications until the connection breaks (false, with why)
 * or stop is asked (true). */
static bool
listener_run(struct pg_listener *l, struct pg_conn *c, char *why,
    size_t whylen)
{
	int r;

	for (;;) {
		listener_drain(l, c->pg);
		r = pg_wait_fd(PQsocket(c->pg), POLLIN, l->stop_pipe[0],
		    PG_NO_DEADLINE);
		if (r < 0)
			return true;
		if (!PQconsumeInput(c->pg) ||
		    PQstatus(c->pg) != CONNECTION_OK) {
			pg_first_line(why, whylen, PQerrorMessage(c->pg));
			return false;
		}
	}
}

static bool
listener_stopped(struct pg_listener *l)
{
	struct pollfd pfd = { .fd = l->stop_pipe[0], .events = POLLIN };

	return poll(&pfd, 1, 0) > 0;
}

static void *
listener_main(void *arg)
{
	struct pg_listener *l = arg;
	struct pg_conn c = { .stop_fd = l->stop_pipe[0] };
	char why[256];
	bool down = false;
	int backoff = 0;

	while (!listener_stopped(l)) {
		if (!listener_open(l, &c, why, sizeof(why))) {
			if (listener_stopped(l))
				break;
			if (!down)
				log_warn("database unavailable", "channel",
				    l->channel, "error", why);
			down = true;
			backoff = backoff == 0 ? PG_BACKOFF_MIN_MS :
			    (int)pg_min(backoff * 2, PG_BACKOFF_MAX_MS);
			if (listener_sleep(l, backoff))
				break;
			continue;
		}
		if (down)
			log_info("database available again", "channel",
			    l->channel);
		down = false;
		backoff = 0;
		if (l->on_reconnect != NULL)
			l->on_reconnect(l->arg);
		if (listener_run(l, &c, why, sizeof(why))) {
			conn_close(&c);
			break;
		}
		conn_close(&c);
		log_warn("database unavailable", "channel", l->channel,
		    "error", why);
		down = true;
	}
	conn_close(&c);
	return NULL;
}

static void
listener_free(struct pg_listener *l)
{
	if (l->stop_pipe[0] >= 0)
		close(l->stop_pipe[0]);
	if (l->stop_pipe[1] >= 0)
		close(l->stop_pipe[1]);
	pg_secret_free(l->conninfo);
	free(l->channel);
	free(l);
}

struct pg_listener *
pg_listener_start(const char *conninfo, const char *channel,
    pg_notify_fn on_notify, pg_reconnect_fn on_reconnect, void *arg)
{
	struct pg_listener *l;
	char err[256];

	if (channel == NULL || channel[0] == '\0' || on_notify == NULL)
		return NULL;
	if (pg_conninfo_check(conninfo, err, sizeof(err)) != 0) {
		log_error("database connection string invalid", "error", err);
		return NULL;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->stop_pipe[0] = l->stop_pipe[1] = -1;
	l->conninfo = xstrdup(conninfo);
	l->channel = xstrdup(channel);
	l->on_notify = on_notify;
	l->on_reconnect = on_reconnect;
	l->arg = arg;
	if (pipe2(l->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		goto fail;
	if (pthread_create(&l->thread, NULL, listener_main, l) != 0)
		goto fail;
	return l;
fail:
	log_error("database listener cannot start", "error", strerror(errno));
	listener_free(l);
	return NULL;
}

void
pg_listener_stop(struct pg_listener *l)
{
	char b = 1;

	if (l == NULL)
		return;
	/* The thread polls the read end in every wait. */
	while (write(l->stop_pipe[1], &b, 1) < 0 && errno == EINTR)
		;
	pthread_join(l->thread, NULL);
	listener_free(l);
}
