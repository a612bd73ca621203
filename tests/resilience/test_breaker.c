/* test_breaker.c - being written. */
#include "testutil.h"
int test_breaker(void) {
  return 1; /* not written yet: fails on purpose */
}
