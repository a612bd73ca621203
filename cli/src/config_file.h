/*
 * config_file.h - `--config FILE`: the options of `ratchet run` in a file.
 *
 * Format (UTF-8 or ASCII text):
 *   # a comment: a line whose first non-blank character is #
 *   jobs = 4              one option per line: its long name, "=", a value
 *   timeout = 2m          blanks around the name and the value are ignored
 *   keep-order            a flag alone turns it on;
 *   tag = false           or true/false, yes/no, on/off, 1/0
 *   joblog = "my log.tsv" double quotes keep leading/trailing blanks
 * Names may be written with a leading "--". There are no inline comments,
 * so that a value may contain "#". Blank lines are ignored. Options on the
 * command line override those of the file, wherever --config appears.
 */
#ifndef RATCHET_CLI_CONFIG_FILE_H
#define RATCHET_CLI_CONFIG_FILE_H

#include "diag.h"

/*
 * Called for each option line: name (without "--"), value (NULL when the
 * line holds only a name) and its line number. A non-zero return stops
 * reading and is returned; the callback's message in e is then prefixed
 * with "FILE:LINE".
 */
typedef int (*cli_config_fn)(void *ctx, const char *name, const char *value,
                             unsigned line, cli_err *e);

/*
 * Reads path and calls fn for every option line, in order. Returns 0; a
 * negated errno with a message naming the file (cannot open or read,
 * larger than 1 MiB); -EINVAL with "FILE:LINE: ..." for a line that is not
 * an option (an empty name, an unterminated quote, a NUL byte); or fn's
 * return value.
 */
int cli_config_read(const char *path, cli_config_fn fn, void *ctx, cli_err *e);

/* Parses a boolean config value: 1 for true, 0 for false, -1 otherwise. */
int cli_config_bool(const char *value);

#endif
