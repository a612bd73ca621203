/*
 * ratchet/clock.h - the real clock, for the thin wrappers around ratchet's
 * pure functions.
 *
 * Everything in libratchet-resilience takes time as a `uint64_t now_ns`
 * parameter (monotonic nanoseconds); only the code that calls it reads the
 * clock, so tests can move time by hand. These two functions are that read
 * and the matching sleep, on the platform's monotonic clock.
 */
#ifndef RATCHET_CLOCK_H
#define RATCHET_CLOCK_H

#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Monotonic time in nanoseconds from an arbitrary origin. Any thread. */
RATCHET_API uint64_t ratchet_now_ns(void);

/* Sleeps for at least ns nanoseconds, resuming after signal interruptions.
 * Any thread. */
RATCHET_API void ratchet_sleep_ns(uint64_t ns);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_CLOCK_H */
