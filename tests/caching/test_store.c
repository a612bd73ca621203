/* test_store.c - being written. */
#include "testutil.h"
int test_store(void) {
  return 1; /* not written yet: fails on purpose */
}
