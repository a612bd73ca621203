/*
 * run_output.h - how `ratchet run` prints what its tasks wrote.
 *
 * Output is never interleaved: each finished task is printed whole, its
 * stdout on stdout and its stderr on stderr, in the order tasks finish -
 * or, with -k, in the order they were submitted (results that finish early
 * are held back, their spill files renamed so that they outlive the
 * orchestrator's callback). --tag prefixes every line with the input and a
 * TAB; --json prints one JSON object per task on stdout instead.
 */
#ifndef RATCHET_CLI_RUN_OUTPUT_H
#define RATCHET_CLI_RUN_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One finished task, as the output needs it. Everything is borrowed for
 * the call to cli_out_task. */
typedef struct cli_out_rec {
  uint64_t order; /* 0, 1, 2 ... in submission order */
  uint64_t seq;   /* the input's number, {#} */
  const char *input;
  const char *command; /* the display form */
  const char *status;  /* ratchet_status_name */
  const char *error;   /* "" when none */
  int exit_code;
  int term_signal;
  uint32_t attempts;
  bool cached;
  uint64_t duration_ms;
  const void *out; /* stdout in memory, or out_path */
  size_t out_len;
  const char *out_path;
  const void *err;
  size_t err_len;
  const char *err_path;
} cli_out_rec;

typedef struct cli_out cli_out;

/* A hook the output calls before it writes anything, so that a progress
 * line can step aside. */
typedef void (*cli_out_before_fn)(void *ctx);

/*
 * Creates the printer: keep_order holds results back up to `window` tasks
 * ahead of the next one to print (the caller never lets more be
 * outstanding); tag and json as the options say; out_fd/err_fd where to
 * write. 0 and *out, or -ENOMEM.
 */
int cli_out_new(bool keep_order, bool tag, bool json, uint32_t window,
                int out_fd, int err_fd, cli_out **out);

void cli_out_set_before(cli_out *o, cli_out_before_fn fn, void *ctx);

/* Ends the line a task's stderr left open (it did not end with a
 * newline), so that a log line written next to stderr starts a line of
 * its own. NULL-safe. */
void cli_out_end_line(cli_out *o);

/* Whole lines: a stdout that does not end with a newline gets one (for
 * plugin kinds, whose outputs are values rather than text streams). */
void cli_out_set_lines(cli_out *o, bool on);

/* Prints r now, or holds it until its turn (-k). 0, or a negated errno
 * when writing failed (-EPIPE, -EIO) or memory ran out. */
int cli_out_task(cli_out *o, const cli_out_rec *r);

/* The next order number -k waits for (tasks printed so far, for -k). */
uint64_t cli_out_next(const cli_out *o);

/* Prints whatever is still held, in order, skipping the gaps (tasks that
 * never finished). */
int cli_out_flush(cli_out *o);

/* Frees the printer and deletes held spill files. NULL is a no-op. */
void cli_out_free(cli_out *o);

#endif
