/*
 * test_error.c - the shared error table: every ratchet code has a distinct
 * name and message and lies far below errno's range; errno values pass
 * through with their C library text.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ratchet/error.h"
#include "testutil.h"

static const int codes[] = {
#define CODE(name, value, msg) value,
    RATCHET_ERRNO_MAP(CODE)
#undef CODE
};

static void test_own_codes(void **state) {
  (void)state;
  size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    assert_true(codes[i] <= -30000);
    assert_true(RATCHET_ERR_IS_OWN(codes[i]));
    assert_int_equal(strncmp(ratchet_err_name(codes[i]), "RATCHET_E", 9), 0);
    assert_string_not_equal(ratchet_strerror(codes[i]), "unknown error");
    for (size_t j = i + 1; j < n; j++) {
      assert_int_not_equal(codes[i], codes[j]);
      assert_string_not_equal(ratchet_err_name(codes[i]),
                              ratchet_err_name(codes[j]));
    }
  }
  assert_string_equal(ratchet_err_name(RATCHET_EBREAKER_OPEN),
                      "RATCHET_EBREAKER_OPEN");
  assert_string_equal(ratchet_strerror(RATCHET_EBREAKER_OPEN),
                      "circuit breaker is open");
}

static void test_errno_pass_through(void **state) {
  (void)state;
  assert_false(RATCHET_ERR_IS_OWN(-EINVAL));
  assert_false(RATCHET_ERR_IS_OWN(-30799)); /* LMDB's MDB_KEYEXIST */
  assert_string_equal(ratchet_err_name(-EINVAL), "EINVAL");
  assert_string_equal(ratchet_err_name(-ENOMEM), "ENOMEM");
  assert_string_equal(ratchet_strerror(-EINVAL), strerror(EINVAL));
  assert_string_equal(ratchet_err_name(0), "OK");
  assert_string_equal(ratchet_strerror(0), "success");
  assert_string_equal(ratchet_err_name(12345), "UNKNOWN");
  assert_string_equal(ratchet_strerror(12345), "unknown error");
  assert_string_equal(ratchet_strerror(-29999), "unknown error");
}

int test_error(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_own_codes),
      cmocka_unit_test(test_errno_pass_through),
  };
  return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
