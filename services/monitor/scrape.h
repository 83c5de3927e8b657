/*
 * scrape: GET /metrics from a node's metrics endpoint (host:port, as it
 * registered it), within a timeout. HTTP/1.0, one request per
 * connection, as the runtime's endpoint answers.
 */
#ifndef MONITOR_SCRAPE_H
#define MONITOR_SCRAPE_H

#include <stddef.h>

#define SCRAPE_MAX_BYTES (4 << 20)

/* 0 with the body (NUL-terminated, to free) in *body, or -1 with why in
 * err. */
int scrape_metrics(const char *addr, int timeout_ms, char **body, char *err,
    size_t errlen);

#endif
