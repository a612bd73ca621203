/*
 * test_input.c - the input readers (input.c): lines, NUL-separated
 * records, a missing final separator, empty records, records longer than
 * the read buffer, NUL bytes in a line, lists, and missing files.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "input.h"
#include "ratchet/alloc.h"
#include "testutil.h"

static cli_input *open_text(const char *text, size_t len, char sep) {
  const char *path = tu_write_temp(0, text, len);
  cli_input *in;
  cli_err e = {{0}};
  assert_int_equal(cli_input_from_file("-a", path, sep, &in, &e), 0);
  unlink(path); /* the fd stays open */
  return in;
}

static void expect(cli_input *in, const char *want, size_t wlen) {
  const char *rec;
  size_t len;
  cli_err e = {{0}};
  assert_int_equal(cli_input_next(in, &rec, &len, &e), 1);
  assert_int_equal(len, wlen);
  assert_memory_equal(rec, want, wlen);
  assert_int_equal(rec[len], '\0');
}

static void expect_end(cli_input *in) {
  const char *rec;
  size_t len;
  cli_err e = {{0}};
  assert_int_equal(cli_input_next(in, &rec, &len, &e), 0);
  assert_int_equal(cli_input_next(in, &rec, &len, &e), 0);
}

static void lines(void **state) {
  (void)state;
  const char text[] = "a b\n\nit's \"q\"\r\nlast";
  cli_input *in = open_text(text, sizeof text - 1, '\n');
  expect(in, "a b", 3);
  expect(in, "", 0);
  expect(in, "it's \"q\"\r", 9);
  expect(in, "last", 4);
  assert_true(cli_input_unterminated(in));
  expect_end(in);
  assert_int_equal(cli_input_count(in), 4);
  cli_input_free(in);
}

static void nul_records(void **state) {
  (void)state;
  const char text[] = "one\ntwo\0three words\0\0";
  cli_input *in = open_text(text, sizeof text - 1, '\0');
  expect(in, "one\ntwo", 7);
  expect(in, "three words", 11);
  expect(in, "", 0);
  assert_false(cli_input_unterminated(in));
  expect_end(in);
  cli_input_free(in);
}

static void nul_in_line(void **state) {
  (void)state;
  const char text[] = "ok\nbad\0byte\n";
  cli_input *in = open_text(text, sizeof text - 1, '\n');
  expect(in, "ok", 2);
  const char *rec;
  size_t len;
  cli_err e = {{0}};
  assert_int_equal(cli_input_next(in, &rec, &len, &e), -EINVAL);
  assert_msg_has(e.msg, "input 2 contains a NUL byte (use -0");
  cli_input_free(in);
}

static void long_records(void **state) {
  (void)state;
  const size_t n = 300000;
  char *text = ratchet_malloc(2 * n + 2);
  memset(text, 'x', n);
  text[n] = '\n';
  memset(text + n + 1, 'y', n);
  text[2 * n + 1] = '\n';
  cli_input *in = open_text(text, 2 * n + 2, '\n');
  expect(in, text, n);
  expect(in, text + n + 1, n);
  expect_end(in);
  cli_input_free(in);
  ratchet_free(text);
}

static void empty_and_list(void **state) {
  (void)state;
  cli_input *in = open_text("", 0, '\n');
  expect_end(in);
  cli_input_free(in);
  char *items[] = {(char *)"a", (char *)"", (char *)"c d"};
  assert_int_equal(cli_input_from_list(items, 3, &in), 0);
  expect(in, "a", 1);
  expect(in, "", 0);
  expect(in, "c d", 3);
  expect_end(in);
  cli_input_free(in);
  cli_input_free(NULL);
}

static void expect_fields(cli_input *in, const char *rec, size_t n, ...) {
  expect(in, rec, strlen(rec));
  const char *const *f;
  size_t got;
  cli_input_fields(in, &f, &got);
  assert_int_equal(got, n);
  va_list ap;
  va_start(ap, n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(f[i], va_arg(ap, const char *));
  va_end(ap);
}

/* Several ::: lists: every combination, the last list fastest; :::+
 * lists side by side as far as the shortest (GNU parallel 20221122). */
static void combinations(void **state) {
  (void)state;
  char *items[] = {(char *)"a", (char *)"b", (char *)"1", (char *)"2",
                   (char *)"3", (char *)"x", (char *)"y"};
  cli_input_group g[] = {{0, 2, false}, {2, 3, false}};
  cli_input *in;
  assert_int_equal(cli_input_from_lists(items, g, 2, false, &in), 0);
  expect_fields(in, "a 1", 2, "a", "1");
  expect_fields(in, "a 2", 2, "a", "2");
  expect_fields(in, "a 3", 2, "a", "3");
  expect_fields(in, "b 1", 2, "b", "1");
  expect_fields(in, "b 2", 2, "b", "2");
  expect_fields(in, "b 3", 2, "b", "3");
  expect_end(in);
  assert_int_equal(cli_input_count(in), 6);
  cli_input_free(in);

  /* 1 2 3 :::+ x y, then ::: a b. */
  cli_input_group l[] = {{2, 3, false}, {5, 2, true}, {0, 2, false}};
  assert_int_equal(cli_input_from_lists(items, l, 3, false, &in), 0);
  expect_fields(in, "1 x a", 3, "1", "x", "a");
  expect_fields(in, "1 x b", 3, "1", "x", "b");
  expect_fields(in, "2 y a", 3, "2", "y", "a");
  expect_fields(in, "2 y b", 3, "2", "y", "b");
  expect_end(in); /* linked lists stop with the shortest: no 3 */
  cli_input_free(in);

  /* --link: every list side by side as far as the longest, the shorter
   * starting over; an empty list gives nothing. */
  cli_input_group lk[] = {{2, 3, false}, {5, 2, false}, {0, 1, false}};
  assert_int_equal(cli_input_from_lists(items, lk, 3, true, &in), 0);
  expect_fields(in, "1 x a", 3, "1", "x", "a");
  expect_fields(in, "2 y a", 3, "2", "y", "a");
  expect_fields(in, "3 x a", 3, "3", "x", "a");
  expect_end(in);
  cli_input_free(in);
  cli_input_group le[] = {{2, 3, false}, {5, 0, false}};
  assert_int_equal(cli_input_from_lists(items, le, 2, true, &in), 0);
  expect_end(in);
  cli_input_free(in);

  /* An empty list: no combination at all. */
  cli_input_group z[] = {{0, 2, false}, {2, 0, false}};
  assert_int_equal(cli_input_from_lists(items, z, 2, false, &in), 0);
  expect_end(in);
  cli_input_free(in);

  /* One list is the plain list: no fields. */
  cli_input_group one[] = {{5, 2, false}};
  assert_int_equal(cli_input_from_lists(items, one, 1, false, &in), 0);
  expect_fields(in, "x", 0);
  expect_fields(in, "y", 0);
  expect_end(in);
  cli_input_free(in);
}

/* --colsep: each line cut at every (multi-byte) separator; the record
 * stays whole. */
static void colsep(void **state) {
  (void)state;
  const char text[] = "a::b::c\nplain\n::\nx::\n";
  cli_input *in = open_text(text, sizeof text - 1, '\n');
  assert_int_equal(cli_input_set_colsep(in, "::"), 0);
  expect_fields(in, "a::b::c", 3, "a", "b", "c");
  expect_fields(in, "plain", 1, "plain");
  expect_fields(in, "::", 2, "", "");
  expect_fields(in, "x::", 2, "x", "");
  expect_end(in);
  cli_input_free(in);
}

/* Paced: one read per cli_input_readable, -EAGAIN in between; a record
 * longer than many reads comes out whole, and so does the next one. */
static void paced_long_record(void **state) {
  (void)state;
  size_t big = 300000;
  char *text = ratchet_malloc(big + 8);
  memset(text, 'a', big);
  memcpy(text + big, "\nb\nc", 5);
  cli_input *in = open_text(text, big + 4, '\n');
  cli_input_set_paced(in);
  const char *rec;
  size_t len;
  cli_err e = {{0}};
  unsigned waits = 0;
  int rc;
  while ((rc = cli_input_next(in, &rec, &len, &e)) == -EAGAIN) {
    waits++;
    cli_input_readable(in);
  }
  assert_int_equal(rc, 1);
  assert_true(waits >= 3); /* 64 KiB at first, the buffer doubling */
  assert_int_equal(len, big);
  assert_memory_equal(rec, text, big);
  while ((rc = cli_input_next(in, &rec, &len, &e)) == -EAGAIN)
    cli_input_readable(in);
  assert_int_equal(rc, 1);
  assert_string_equal(rec, "b");
  while ((rc = cli_input_next(in, &rec, &len, &e)) == -EAGAIN)
    cli_input_readable(in);
  assert_int_equal(rc, 1);
  assert_string_equal(rec, "c");
  assert_true(cli_input_unterminated(in));
  while ((rc = cli_input_next(in, &rec, &len, &e)) == -EAGAIN)
    cli_input_readable(in);
  assert_int_equal(rc, 0);
  cli_input_free(in);
  ratchet_free(text);
}

/* --colsep cuts ::: values too, each list's value into its columns. */
static void colsep_lists(void **state) {
  (void)state;
  char *items[] = {(char *)"a,b", (char *)"c", (char *)"d,,e"};
  cli_input_group g[] = {{0, 2, false}, {2, 1, false}};
  cli_input *in;
  assert_int_equal(cli_input_from_lists(items, g, 2, false, &in), 0);
  assert_int_equal(cli_input_set_colsep(in, ","), 0);
  expect_fields(in, "a,b d,,e", 5, "a", "b", "d", "", "e");
  expect_fields(in, "c d,,e", 4, "c", "d", "", "e");
  expect_end(in);
  cli_input_free(in);
  cli_input_group one[] = {{0, 2, false}};
  assert_int_equal(cli_input_from_lists(items, one, 1, false, &in), 0);
  assert_int_equal(cli_input_set_colsep(in, ","), 0);
  expect_fields(in, "a,b", 2, "a", "b");
  expect_fields(in, "c", 1, "c");
  expect_end(in);
  cli_input_free(in);
}

static void pipe_input(void **state) {
  (void)state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(write(p[1], "1\n2\n3", 5), 5);
  close(p[1]);
  cli_input *in;
  assert_int_equal(cli_input_from_fd(p[0], true, '\n', "stdin", &in), 0);
  expect(in, "1", 1);
  expect(in, "2", 1);
  expect(in, "3", 1);
  expect_end(in);
  cli_input_free(in);
}

static void missing_file(void **state) {
  (void)state;
  cli_input *in;
  cli_err e = {{0}};
  assert_int_equal(
      cli_input_from_file("-a", "/nonexistent/inputs.txt", '\n', &in, &e),
      -ENOENT);
  assert_msg_has(e.msg, "-a: cannot open '/nonexistent/inputs.txt'");
  assert_msg_has(e.msg, "No such file");
}

int test_input(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(lines),
      cmocka_unit_test(nul_records),
      cmocka_unit_test(nul_in_line),
      cmocka_unit_test(long_records),
      cmocka_unit_test(empty_and_list),
      cmocka_unit_test(pipe_input),
      cmocka_unit_test(missing_file),
      cmocka_unit_test(combinations),
      cmocka_unit_test(colsep),
      cmocka_unit_test(colsep_lists),
      cmocka_unit_test(paced_long_record),
  };
  return cmocka_run_group_tests_name("input", tests, NULL, NULL);
}
