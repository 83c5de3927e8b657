/*
 * scrape: GET /metrics over a plain socket. See scrape.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "platform/clock.h"
#include "platform/settings.h"
#include "platform/xalloc.h"
#include "scrape.h"

/* Waits for fd to be ready for events before the deadline: 0, or -1. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t left = deadline - plat_now_ms();

	return left > 0 && poll(&p, 1, (int)left) == 1 ? 0 : -1;
}

static int
connect_to(const char *addr, int64_t deadline, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	char host[256];
	const char *port = settings_split_address(addr, host, sizeof(host));
	int fd, soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (port == NULL) {
		snprintf(err, errlen, "not host:port: %s", addr);
		return -1;
	}
	if (getaddrinfo(host, port, &hints, &res) != 0) {
		snprintf(err, errlen, "cannot resolve %s", addr);
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) != 0 &&
	    errno != EINPROGRESS) || wait_fd(fd, POLLOUT, deadline) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 ||
	    soerr != 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", addr,
		    soerr != 0 ? strerror(soerr) : "timeout");
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int
scrape_metrics(const char *addr, int timeout_ms, char **body, char *err,
    size_t errlen)
{
	static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
	int64_t deadline = plat_now_ms() + timeout_ms;
	size_t len = 0, cap = 65536;
	char *buf, *start;
	int fd;

	*body = NULL;
	if ((fd = connect_to(addr, deadline, err, errlen)) < 0)
		return -1;
	if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
		snprintf(err, errlen, "cannot send to %s", addr);
		close(fd);
		return -1;
	}
	buf = xcalloc(1, cap);
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap) {
			if (cap >= SCRAPE_MAX_BYTES) {
				snprintf(err, errlen, "%s: more than %d bytes",
				    addr, SCRAPE_MAX_BYTES);
				goto fail;
			}
			buf = xrealloc(buf, cap *= 2);
		}
		if (wait_fd(fd, POLLIN, deadline) != 0) {
			snprintf(err, errlen, "%s: timeout", addr);
			goto fail;
		}
		if ((n = read(fd, buf + len, cap - len - 1)) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			snprintf(err, errlen, "%s: %s", addr, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 8, " 200", 4) !=
	    0 || (start = strstr(buf, "\r\n\r\n")) == NULL) {
		snprintf(err, errlen, "%s: not a 200 answer", addr);
		free(buf);
		return -1;
	}
	memmove(buf, start + 4, len - (size_t)(start + 4 - buf) + 1);
	*body = buf;
	return 0;
fail:
	close(fd);
	free(buf);
	return -1;
}
