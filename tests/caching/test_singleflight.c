/* test_singleflight.c - being written. */
#include "testutil.h"
int test_singleflight(void) {
  return 1; /* not written yet: fails on purpose */
}
