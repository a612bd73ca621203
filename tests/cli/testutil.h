/*
 * testutil.h - the groups of test-cli, the unit suite of the command
 * line's modules (cli/src). The runner is tests/common's.
 */
#ifndef RATCHET_CLI_TESTUTIL_H
#define RATCHET_CLI_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testsupport.h"

int test_parse(void);
int test_template(void);
int test_input(void);
int test_config(void);
int test_joblog(void);
int test_run_options(void);
int test_exec(void);

/* Writes text to a new temporary file; returns its path (static buffer
 * per call slot 0..3). */
const char *tu_write_temp(int slot, const char *text, size_t len);

/* Asserts that the message contains needle. */
#define assert_msg_has(msg, needle)                                            \
  do {                                                                         \
    if (strstr((msg), (needle)) == NULL)                                       \
      fail_msg("message '%s' lacks '%s'", (msg), (needle));                    \
  } while (0)

#endif
