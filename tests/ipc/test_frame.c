/* test_frame.c - being written. */
#include "testutil.h"
int test_frame(void) {
  return 1; /* not written yet: fails on purpose */
}
