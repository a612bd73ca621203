/* test_acct.c - placeholder: being written. */
#include "testutil.h"

int test_acct(void) { return 0; }
