/* test_interop.c - being written. */
#include "testutil.h"
int test_interop(void) {
  return 1; /* not written yet: fails on purpose */
}
