/*
 * ratchet/resilience.h - everything in libratchet-resilience.
 *
 * Backoff, retry with budgets, circuit breaker, rate limiter and bulkhead,
 * in C11 with nothing but the C library. Time and randomness are parameters.
 * See docs/resilience.md for a guide and the table of options.
 */
#ifndef RATCHET_RESILIENCE_H
#define RATCHET_RESILIENCE_H

#include "ratchet/alloc.h"
#include "ratchet/backoff.h"
#include "ratchet/breaker.h"
#include "ratchet/budget.h"
#include "ratchet/bulkhead.h"
#include "ratchet/clock.h"
#include "ratchet/error.h"
#include "ratchet/ratelimit.h"
#include "ratchet/retry.h"
#include "ratchet/rng.h"
#include "ratchet/version.h"

#endif /* RATCHET_RESILIENCE_H */
