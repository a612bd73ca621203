/* test_tiered.c - being written. */
#include "testutil.h"
int test_tiered(void) {
  return 1; /* not written yet: fails on purpose */
}
