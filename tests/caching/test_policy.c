/* test_policy.c - being written. */
#include "testutil.h"
int test_policy(void) {
  return 1; /* not written yet: fails on purpose */
}
