/* test_retry.c - being written. */
#include "testutil.h"
int test_retry(void) {
  return 1; /* not written yet: fails on purpose */
}
