/* test_backoff.c - being written. */
#include "testutil.h"
int test_backoff(void) {
  return 1; /* not written yet: fails on purpose */
}
