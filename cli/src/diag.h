/*
 * diag.h - the command line's error messages and exit codes.
 *
 * Every parser of the command line fills a cli_err with one sentence that
 * names the flag (or FILE:LINE) and the bad value, and returns -EINVAL (or
 * another negative errno). main() prints it after "ratchet SUBCOMMAND: "
 * and exits with CLI_EXIT_USAGE.
 */
#ifndef RATCHET_CLI_DIAG_H
#define RATCHET_CLI_DIAG_H

#include <stddef.h>

#if defined(__GNUC__) || defined(__clang__)
#define CLI_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define CLI_PRINTF(fmt, args)
#endif

/* Exit statuses shared by every subcommand (docs/cli.md, "Exit status"). */
enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILURE = 1, /* the subcommand ran and failed (cache, verify) */
  CLI_EXIT_USAGE = 255  /* bad flag, value, config line, path; other errors */
};

/* One error message; empty until set. */
typedef struct cli_err {
  char msg[2048];
} cli_err;

/* Replaces the message, formatted as printf does (truncated to fit). */
void cli_err_set(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Prefixes the existing message with "PREFIX: " (e.g. "FILE:LINE"). */
void cli_err_prefix(cli_err *e, const char *fmt, ...) CLI_PRINTF(2, 3);

/* A bad value made safe to print inside quotes: control bytes and quotes
 * become escapes (\n, \t, \xNN, \'), and text past 64 bytes becomes "...".
 * Writes into buf (at least CLI_SHOW_SIZE bytes) and returns it. */
#define CLI_SHOW_SIZE 280
const char *cli_show(const char *s, char *buf);

/* The same for a path, which the user needs whole to find the file: up to
 * CLI_SHOW_PATH_MAX bytes are shown; a longer one keeps its head and its
 * tail (the file name) around "...". buf holds CLI_SHOW_PATH_SIZE bytes. */
#define CLI_SHOW_PATH_MAX  384
#define CLI_SHOW_PATH_SIZE (CLI_SHOW_PATH_MAX * 4 + 8)
const char *cli_show_path(const char *path, char *buf);

#endif
