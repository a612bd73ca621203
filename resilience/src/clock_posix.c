/*
 * clock_posix.c - ratchet_now_ns and ratchet_sleep_ns on POSIX
 * clock_gettime(CLOCK_MONOTONIC) and nanosleep(). Chosen by CMake when the
 * platform has them; the pure functions of the library never call these.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <time.h>

#include "ratchet/clock.h"

uint64_t ratchet_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void ratchet_sleep_ns(uint64_t ns) {
  struct timespec req, rem;
  req.tv_sec = (time_t)(ns / UINT64_C(1000000000));
  req.tv_nsec = (long)(ns % UINT64_C(1000000000));
  while (nanosleep(&req, &rem) == -1 && errno == EINTR)
    req = rem;
}
