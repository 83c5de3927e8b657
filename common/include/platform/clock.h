/*
 * clock: the few time helpers every module needs, in one place.
 *
 * Waits use CLOCK_MONOTONIC so a wall-clock step never stretches or cuts
 * a timeout; plat_cond_init makes condition variables wait on it too.
 */
#ifndef PLATFORM_CLOCK_H
#define PLATFORM_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

int64_t plat_now_ms(void);     /* monotonic */
int64_t plat_now_us(void);     /* monotonic */
int64_t plat_wall_ms(void);    /* Unix time */

/* The absolute CLOCK_MONOTONIC time ms from now. */
struct timespec plat_deadline_ts(int64_t ms);

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
void plat_cond_init(pthread_cond_t *cv);

/* Waits on cv (inited by plat_cond_init; mu held) until *stop is set or
 * ms pass, whichever is first; returns *stop. */
int plat_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms,
    const volatile int *stop);

#endif
