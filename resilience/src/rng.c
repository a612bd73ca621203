/*
 * rng.c - xoshiro256** seeded by splitmix64, and the two pure mappings from
 * 64 random bits to the ranges jitter needs.
 *
 * splitmix64 spreads any seed (0 included) over the 256-bit state, which
 * xoshiro must not start all-zero. ratchet_rng_upto uses Lemire's
 * multiply-shift with a 32x32 split so it needs no 128-bit integers; its bias
 * (at most bound / 2^64) is far below anything a delay can show.
 */
#include "ratchet/rng.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

void ratchet_rng_seed(ratchet_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; i++)
    rng->s[i] = splitmix64(&seed);
}

uint64_t ratchet_rng_next(ratchet_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double ratchet_rng_unit(uint64_t random) {
  return (double)(random >> 11) * 0x1.0p-53;
}

/* High 64 bits of the 128-bit product a * b. */
static uint64_t mulhi64(uint64_t a, uint64_t b) {
  uint64_t a_lo = (uint32_t)a, a_hi = a >> 32;
  uint64_t b_lo = (uint32_t)b, b_hi = b >> 32;
  uint64_t lo_lo = a_lo * b_lo;
  uint64_t hi_lo = a_hi * b_lo;
  uint64_t lo_hi = a_lo * b_hi;
  uint64_t hi_hi = a_hi * b_hi;
  uint64_t cross = (lo_lo >> 32) + (uint32_t)hi_lo + lo_hi;
  return hi_hi + (hi_lo >> 32) + (cross >> 32);
}

uint64_t ratchet_rng_upto(uint64_t random, uint64_t bound) {
  if (bound == UINT64_MAX)
    return random;
  return mulhi64(random, bound + 1);
}
