/*
 * clock: time helpers. See platform/clock.h.
 */
#include <errno.h>

#include "platform/clock.h"

static int64_t
clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
plat_now_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

int64_t
plat_now_us(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000;
}

int64_t
plat_wall_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000;
}

struct timespec
plat_deadline_ts(int64_t ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return ts;
}

void
plat_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &attr);
	pthread_condattr_destroy(&attr);
}

int
plat_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms,
    const volatile int *stop)
{
	struct timespec until = plat_deadline_ts(ms);

	while (!*stop && pthread_cond_timedwait(cv, mu, &until) != ETIMEDOUT)
		;
	return *stop;
}
