/*
 * echo-server: the baseline of bench/run, a minimal gRPC C-core server.
 *
 * One registered unary method, /bench.Echo/Echo, answers with the request
 * bytes unchanged: no decoding, no logging, no metrics. It is threaded the
 * way a production C-core server is (and the way common/server.c is): one
 * completion queue, N pollers calling grpc_completion_queue_next on it,
 * ECHO_REQUESTS calls pre-requested so several calls are accepted at once,
 * each request re-armed before the call it delivered is handled. Any other
 * path gets UNIMPLEMENTED at once instead of hanging to its deadline.
 *
 * So the gap between this server and discovery-srv is the platform's own
 * cost: decode, handler, registry read, encode, metrics, logging.
 *
 *   echo-server [--listen 127.0.0.1:50051] [--threads N]
 *
 * N defaults to the number of online cores. SIGTERM or SIGINT stops it:
 * shutdown, cancel what is left, drain the queue, join, exit 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#define ECHO_PATH "/bench.Echo/Echo"
#define ECHO_REQUESTS 16                /* pre-requested calls, as server.c */

struct echo_tag {
	void (*fn)(struct echo_tag *t, int ok);
};

/* One call, from its request to the completion of its only batch. */
struct echo_call {
	struct echo_tag t_request;
	struct echo_tag t_done;
	int registered;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_call_details details;            /* unregistered calls only */
	grpc_metadata_array md_in;
	grpc_byte_buffer *payload;
	int cancelled;
};

static struct {
	grpc_server *server;
	grpc_completion_queue *cq;
	void *method;
	atomic_int stopping;
	struct echo_tag t_shutdown;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int shutdown_done;
} echo;

static void on_request(struct echo_tag *t, int ok);
static void on_done(struct echo_tag *t, int ok);

#define CALL_OF(t, member) \
	((struct echo_call *)((char *)(t) - offsetof(struct echo_call, member)))

static struct echo_call *
call_new(int registered)
{
	struct echo_call *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		perror("echo-server: calloc");
		abort();
	}
	c->registered = registered;
	c->t_request.fn = on_request;
	c->t_done.fn = on_done;
	grpc_metadata_array_init(&c->md_in);
	if (!registered)
		grpc_call_details_init(&c->details);
	return c;
}

static void
call_free(struct echo_call *c)
{
	if (c->payload != NULL)
		grpc_byte_buffer_destroy(c->payload);
	grpc_metadata_array_destroy(&c->md_in);
	if (!c->registered)
		grpc_call_details_destroy(&c->details);
	if (c->call != NULL)
		grpc_call_unref(c->call);
	free(c);
}

static void
arm(int registered)
{
	struct echo_call *c;
	grpc_call_error err;

	if (atomic_load(&echo.stopping))
		return;
	c = call_new(registered);
	if (registered)
		err = grpc_server_request_registered_call(echo.server,
		    echo.method, &c->call, &c->deadline, &c->md_in,
		    &c->payload, echo.cq, echo.cq, &c->t_request);
	else
		err = grpc_server_request_call(echo.server, &c->call,
		    &c->details, &c->md_in, echo.cq, echo.cq, &c->t_request);
	if (err != GRPC_CALL_OK) {
		/* Only after shutdown started; nothing to re-arm then. */
		call_free(c);
	}
}

/*
 * A call arrived: re-arm first, then answer in ONE batch. For the echo
 * that is the request bytes and OK; for an unknown path UNIMPLEMENTED;
 * for a unary call without a message INVALID_ARGUMENT (no message sent).
 */
static void
on_request(struct echo_tag *t, int ok)
{
	struct echo_call *c = CALL_OF(t, t_request);
	grpc_op ops[4], *op = ops;
	grpc_slice details;
	grpc_status_code code;
	grpc_call_error err;

	if (!ok) {                       /* server shutting down */
		call_free(c);
		return;
	}
	arm(c->registered);

	if (!c->registered) {
		code = GRPC_STATUS_UNIMPLEMENTED;
		details = grpc_slice_from_static_string("unknown method");
	} else if (c->payload == NULL) {
		code = GRPC_STATUS_INVALID_ARGUMENT;
		details = grpc_slice_from_static_string("no request message");
	} else {
		code = GRPC_STATUS_OK;
		details = grpc_empty_slice();
	}
	memset(ops, 0, sizeof(ops));
	op->op = GRPC_OP_SEND_INITIAL_METADATA;
	op++;
	if (code == GRPC_STATUS_OK) {
		op->op = GRPC_OP_SEND_MESSAGE;
		op->data.send_message.send_message = c->payload;
		op++;
	}
	op->op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op->data.recv_close_on_server.cancelled = &c->cancelled;
	op++;
	op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	op->data.send_status_from_server.status = code;
	op->data.send_status_from_server.status_details = &details;
	op++;
	/* The completion may run on another poller before this returns:
	 * c is not touched after start_batch. */
	err = grpc_call_start_batch(c->call, ops, (size_t)(op - ops),
	    &c->t_done, NULL);
	if (err != GRPC_CALL_OK) {
		fprintf(stderr, "echo-server: start_batch: %d\n", (int)err);
		call_free(c);
	}
}

static void
on_done(struct echo_tag *t, int ok)
{
	call_free(CALL_OF(t, t_done));
}

static void
on_shutdown(struct echo_tag *t, int ok)
{
	pthread_mutex_lock(&echo.mu);
	echo.shutdown_done = 1;
	pthread_cond_signal(&echo.cv);
	pthread_mutex_unlock(&echo.mu);
}

static void *
poller(void *arg)
{
	grpc_event ev;

	for (;;) {
		ev = grpc_completion_queue_next(echo.cq,
		    gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type == GRPC_OP_COMPLETE) {
			struct echo_tag *t = ev.tag;

			t->fn(t, ev.success);
		}
	}
	return NULL;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: echo-server [--listen HOST:PORT] [--threads N]\n");
}

int
main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:50051";
	long nthreads = sysconf(_SC_NPROCESSORS_ONLN);
	grpc_server_credentials *creds;
	grpc_channel_args chargs;
	grpc_arg args[1];
	pthread_t *threads;
	sigset_t sigs;
	int sig;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen = argv[++i];
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			char *end;

			nthreads = strtol(argv[++i], &end, 10);
			if (*end != '\0' || nthreads < 1 || nthreads > 256) {
				fprintf(stderr, "echo-server: --threads: "
				    "want 1..256\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (nthreads < 1)
		nthreads = 1;

	/* Signals go to the main thread's sigwait, never to a poller. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	pthread_mutex_init(&echo.mu, NULL);
	pthread_cond_init(&echo.cv, NULL);
	grpc_init();

	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = GRPC_ARG_ALLOW_REUSEPORT;
	args[0].value.integer = 0;
	chargs.num_args = 1;
	chargs.args = args;
	echo.server = grpc_server_create(&chargs, NULL);
	echo.cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(echo.server, echo.cq, NULL);
	echo.method = grpc_server_register_method(echo.server, ECHO_PATH, NULL,
	    GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	creds = grpc_insecure_server_credentials_create();
	if (grpc_server_add_http2_port(echo.server, listen, creds) == 0) {
		fprintf(stderr, "echo-server: cannot listen on %s\n", listen);
		grpc_server_credentials_release(creds);
		return 1;
	}
	grpc_server_credentials_release(creds);
	grpc_server_start(echo.server);

	for (int i = 0; i < ECHO_REQUESTS; i++)
		arm(1);
	arm(0);

	threads = calloc((size_t)nthreads, sizeof(*threads));
	if (threads == NULL)
		abort();
	for (long i = 0; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, poller, NULL) != 0) {
			perror("echo-server: pthread_create");
			abort();
		}
	fprintf(stderr, "echo-server: listening on %s, %ld pollers\n",
	    listen, nthreads);

	do {
		if (sigwait(&sigs, &sig) != 0)
			sig = SIGTERM;
	} while (sig != SIGTERM && sig != SIGINT);

	atomic_store(&echo.stopping, 1);
	echo.t_shutdown.fn = on_shutdown;
	grpc_server_shutdown_and_notify(echo.server, echo.cq, &echo.t_shutdown);
	grpc_server_cancel_all_calls(echo.server);   /* unary: nothing to drain */
	pthread_mutex_lock(&echo.mu);
	while (!echo.shutdown_done)
		pthread_cond_wait(&echo.cv, &echo.mu);
	pthread_mutex_unlock(&echo.mu);
	grpc_completion_queue_shutdown(echo.cq);
	for (long i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	grpc_server_destroy(echo.server);
	grpc_completion_queue_destroy(echo.cq);
	grpc_shutdown();
	return 0;
}
