/* test_bulkhead.c - being written. */
#include "testutil.h"
int test_bulkhead(void) {
  return 1; /* not written yet: fails on purpose */
}
