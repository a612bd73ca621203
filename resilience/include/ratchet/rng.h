/*
 * ratchet/rng.h - a small, fast, seedable random number generator.
 *
 * Every function in libratchet-resilience that jitters takes its random value
 * as a parameter, so that tests are deterministic. Callers that have no
 * generator of their own can use this one: xoshiro256** seeded through
 * splitmix64 (Blackman and Vigna). It is not cryptographic.
 */
#ifndef RATCHET_RNG_H
#define RATCHET_RNG_H

#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Generator state; transparent so it can live on the stack or in a struct.
 * Not thread-safe: give each thread its own. */
typedef struct ratchet_rng {
  uint64_t s[4];
} ratchet_rng;

/* Seeds rng from any 64-bit value (0 included). The same seed always gives
 * the same sequence. */
RATCHET_API void ratchet_rng_seed(ratchet_rng *rng, uint64_t seed);

/* Returns the next 64 uniformly distributed random bits. */
RATCHET_API uint64_t ratchet_rng_next(ratchet_rng *rng);

/* Maps 64 random bits to a double uniformly distributed in [0, 1), using the
 * top 53 bits. Pure. */
RATCHET_API double ratchet_rng_unit(uint64_t random);

/* Returns a value uniformly distributed in [0, bound] (bound inclusive) from
 * 64 random bits, computed in integers (no rounding). Pure. */
RATCHET_API uint64_t ratchet_rng_upto(uint64_t random, uint64_t bound);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_RNG_H */
