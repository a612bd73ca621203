/*
 * placeholder.h - GNU parallel's replacement strings in a command template.
 *
 *   {}    the input                       dir/sub/file.tar.gz
 *   {.}   without its extension           dir/sub/file.tar
 *   {/}   its base name                   file.tar.gz
 *   {//}  its directory ("." if none)     dir/sub
 *   {/.}  base name without extension     file.tar
 *   {#}   the task's sequence number (1, 2, ...)
 *   {N}   the Nth value of an input made of several (N from 1: one per
 *         ::: list, or per column with --colsep); {N.} {N/} {N//} {N/.}
 *         slice it as above. With a single value {1} is {}; a value that
 *         does not exist is empty.
 * With several values {} and its slices stand for every value in turn,
 * each sliced (and quoted) on its own, separated by spaces, as GNU
 * parallel does. The extension is the text from the last "." of the base
 * name, unless that dot starts the base name (".bashrc" has none). Any
 * other text in braces, like awk's '{print $1}', is left as it is, and so
 * is a brace right after a '$' (the shell's ${1}, ${#}).
 */
#ifndef RATCHET_CLI_PLACEHOLDER_H
#define RATCHET_CLI_PLACEHOLDER_H

#include <stdbool.h>
#include <stdint.h>

#include "sbuf.h"

/* One input: the record as a whole ({}) and, when it has several values,
 * each of them ({1}, {2}, ...). */
typedef struct cli_values {
  const char *all;           /* NUL-terminated */
  const char *const *fields; /* n values, or NULL when the input is one */
  size_t n;
} cli_values;

/* The input s alone, as one value. */
static inline cli_values cli_values_one(const char *s) {
  cli_values v = {s, NULL, 0};
  return v;
}

/* True if s contains at least one placeholder. */
bool cli_has_placeholder(const char *s);

/* True if tok is exactly one of {} {.} {/} {//} {/.}: without a shell,
 * such an argument becomes one argument per value. */
bool cli_is_value_placeholder(const char *tok);

/*
 * Appends tmpl to b with every placeholder replaced by its value for input
 * and seq; when quote is true each value is shell-quoted (cli_shell_quote)
 * so that it stays one word whatever it holds. Returns 0 or -ENOMEM.
 */
int cli_expand(cli_sbuf *b, const char *tmpl, const char *input, uint64_t seq,
               bool quote);

/* The same for an input of several values. */
int cli_expand_values(cli_sbuf *b, const char *tmpl, const cli_values *v,
                      uint64_t seq, bool quote);

/*
 * Appends s to b as one POSIX shell word: unchanged if it is non-empty and
 * made only of letters, digits and -_./:,+@%^, otherwise in single quotes
 * with each ' written as '\''. Returns 0 or -ENOMEM.
 */
int cli_shell_quote(cli_sbuf *b, const char *s);

#endif
