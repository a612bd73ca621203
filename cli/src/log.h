/*
 * log.h - the log lines of the command line: levels, two formats, one
 * line per write.
 *
 * Every diagnostic `ratchet run` prints (worker lifecycle, retries,
 * failures, the workers' own stderr, the final error) goes through one
 * cli_log, which filters by level and writes either readable text
 * ("ratchet run: warning: ...", the level coloured only when the file
 * descriptor is a terminal) or one JSON object per line built with
 * jansson: {"time","level","msg"} plus "task", "worker", "attempt",
 * "kind" and "event" when the line concerns one. A line is written with a
 * single write(2), after the "before" hook (which erases the progress
 * line), so a log line never lands in the middle of a task's output: both
 * are written from the one loop thread, each whole.
 *
 * Not thread-safe: use one cli_log from one thread.
 */
#ifndef RATCHET_CLI_LOG_H
#define RATCHET_CLI_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "diag.h"

typedef enum cli_log_level {
  CLI_LOG_DEBUG = 0,
  CLI_LOG_INFO = 1,
  CLI_LOG_WARN = 2,
  CLI_LOG_ERROR = 3
} cli_log_level;

typedef enum cli_log_format {
  CLI_LOG_TEXT = 0, /* "ratchet run: warning: message" */
  CLI_LOG_JSON = 1  /* one JSON object per line */
} cli_log_format;

/* What a line is about. Borrowed for the call. */
typedef struct cli_log_fields {
  uint64_t task;     /* the task's sequence number ({#}); 0: none */
  int32_t worker;    /* the worker slot; -1: none */
  uint32_t attempt;  /* 0: none */
  const char *kind;  /* the task kind; NULL: none */
  const char *event; /* a stable name ("retry", "worker_exited"); NULL */
} cli_log_fields;

#define CLI_LOG_FIELDS_INIT                                                    \
  { .task = 0, .worker = -1, .attempt = 0, .kind = NULL, .event = NULL }

/* Called before each line is written (to erase a progress line). */
typedef void (*cli_log_before_fn)(void *ctx);

/* A plain value: no allocation, nothing to free. */
typedef struct cli_log {
  const char *prog; /* "ratchet run", borrowed for the log's life */
  cli_log_level min;
  cli_log_format format;
  int fd;
  bool color; /* text format on a terminal, NO_COLOR unset, TERM not dumb */
  cli_log_before_fn before;
  void *before_ctx;
} cli_log;

/* Sets l up to write lines of level >= min to fd. */
void cli_log_init(cli_log *l, const char *prog, cli_log_level min,
                  cli_log_format format, int fd);

/* True when a line of this level would be written. */
bool cli_log_on(const cli_log *l, cli_log_level level);

/*
 * Writes one line if level passes the filter. f may be NULL (no fields).
 * The message is cut at 8 KiB; in text, control characters are shown as
 * \xNN, in JSON bytes that are not UTF-8 become U+FFFD. A line that cannot
 * be written is dropped (there is nowhere left to say so).
 */
void cli_log_msg(cli_log *l, cli_log_level level, const cli_log_fields *f,
                 const char *fmt, ...) CLI_PRINTF(4, 5);

/* "debug", "info", "warn", "error". Static. */
const char *cli_log_level_name(cli_log_level level);

/* Parses a --log-level value ("warning" is "warn"): 0, or -EINVAL with the
 * message in e naming flag. */
int cli_log_level_parse(const char *flag, const char *v, cli_log_level *out,
                        cli_err *e);

/* Parses a --log-format value: "text" or "json". 0 or -EINVAL. */
int cli_log_format_parse(const char *flag, const char *v, cli_log_format *out,
                         cli_err *e);

#endif
