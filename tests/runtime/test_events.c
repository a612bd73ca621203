/* test_events.c - placeholder: being written. */
#include "testutil.h"

int test_events(void) { return 0; }
