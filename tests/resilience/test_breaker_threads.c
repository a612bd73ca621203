/* test_breaker_threads.c - being written. */
#include "testutil.h"
int test_breaker_threads(void) {
  return 1; /* not written yet: fails on purpose */
}
