/*
 * main.c - runs every resilience test group, or only those named on the
 * command line (`test-resilience breaker backoff`).
 */
#include "testutil.h"

static const tu_group groups[] = {
    {"alloc", test_alloc},
    {"error", test_error},
    {"rng", test_rng},
    {"backoff", test_backoff},
    {"retry", test_retry},
    {"budget", test_budget},
    {"breaker", test_breaker},
    {"breaker_threads", test_breaker_threads},
    {"ratelimit", test_ratelimit},
    {"bulkhead", test_bulkhead},
};

int main(int argc, char **argv) {
  return tu_main("test-resilience", groups, TU_ARRAY_LEN(groups), NULL, 0, argc,
                 argv);
}
