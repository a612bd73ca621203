/* test_codec.c - being written. */
#include "testutil.h"
int test_codec(void) {
  return 1; /* not written yet: fails on purpose */
}
