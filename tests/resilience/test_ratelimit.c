/* test_ratelimit.c - being written. */
#include "testutil.h"
int test_ratelimit(void) {
  return 1; /* not written yet: fails on purpose */
}
