/* test_key.c - being written. */
#include "testutil.h"
int test_key(void) {
  return 1; /* not written yet: fails on purpose */
}
