/*
 * joblog.h - `--joblog FILE`: one line per finished task, and what
 * `--resume` / `--resume-failed` read back from it.
 *
 * The format is GNU parallel's, tab-separated, with two more columns:
 *   Seq Host Starttime JobRuntime Send Receive Exitval Signal Command
 *   Attempts Cached
 * Seq is the input's sequence number (1, 2, ...), Host ":" (this machine),
 * Starttime seconds since the epoch with milliseconds ("1700000000.123"),
 * JobRuntime seconds with milliseconds, Send the bytes given on the
 * command's stdin, Receive the bytes of its stdout and stderr, Exitval its
 * exit status, Signal the signal that killed it (0: none), Command the
 * command line with \ tab newline CR written as \\ \t \n \r, Attempts the
 * number of attempts made, Cached 1 when the result came from the cache.
 * The first line is the header of column names.
 *
 * Crash safety: each line is appended with one write(2) on an O_APPEND
 * descriptor, so that a kill -9 of ratchet leaves whole lines, except
 * possibly a last line cut short; the reader ignores such a line (its task
 * is not done) and the writer, opening for --resume, cuts it off first.
 */
#ifndef RATCHET_CLI_JOBLOG_H
#define RATCHET_CLI_JOBLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "sbuf.h"

#define CLI_JOBLOG_HEADER                                                      \
  "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\t"         \
  "Command\tAttempts\tCached\n"

typedef struct cli_joblog_entry {
  uint64_t seq;
  const char *host;  /* NULL: ":" */
  uint64_t start_ms; /* since the epoch */
  uint64_t runtime_ms;
  uint64_t send, receive;
  int exitval;
  int signal;
  const char *command;
  uint32_t attempts;
  bool cached;
} cli_joblog_entry;

/* Appends the line for en (with its "\n") to b. 0 or -ENOMEM. */
int cli_joblog_format(cli_sbuf *b, const cli_joblog_entry *en);

typedef struct cli_joblog cli_joblog;

/*
 * Opens path for writing (created 0644). keep (for --resume and
 * --resume-failed) appends to what is there, first cutting off a last line
 * cut short; otherwise the file is emptied. The header is written when the
 * file is empty. 0 and *out; a negated errno and a message naming flag and
 * path.
 */
int cli_joblog_open(const char *flag, const char *path, bool keep,
                    cli_joblog **out, cli_err *e);

/* Appends one line with a single write(2). 0, -ENOMEM, or the negated
 * errno of the write (a short write is -EIO). */
int cli_joblog_write(cli_joblog *j, const cli_joblog_entry *en);

/* Closes the file. NULL is a no-op. */
void cli_joblog_close(cli_joblog *j);

/* What a job log says about each sequence number. */
typedef struct cli_joblog_state cli_joblog_state;

typedef enum cli_joblog_outcome {
  CLI_JOBLOG_ABSENT = 0, /* never finished (or its line was cut short) */
  CLI_JOBLOG_FAILED = 1, /* its last line has Exitval or Signal non-zero */
  CLI_JOBLOG_OK = 2
} cli_joblog_outcome;

/*
 * Reads a job log (ours, or GNU parallel's nine columns). A missing file is
 * an empty log. A line that is not a job log line is an error naming
 * FILE:LINE, unless it is the last one and has no newline (cut short by a
 * kill): it is then ignored. When a seq appears more than once, its last
 * line counts. 0 and *out (free with cli_joblog_state_free); a negated
 * errno with a message.
 */
int cli_joblog_read(const char *flag, const char *path, cli_joblog_state **out,
                    cli_err *e);

cli_joblog_outcome cli_joblog_lookup(const cli_joblog_state *st, uint64_t seq);

/* The numbers of distinct seqs that succeeded and failed. */
void cli_joblog_counts(const cli_joblog_state *st, uint64_t *ok,
                       uint64_t *failed);

/* Whether --resume (failed_too false) or --resume-failed (true) skips
 * seq: --resume skips every recorded task, --resume-failed only those
 * that succeeded. */
bool cli_joblog_skip(const cli_joblog_state *st, uint64_t seq,
                     bool rerun_failed);

void cli_joblog_state_free(cli_joblog_state *st);

#endif
