/*
 * placeholder.h - GNU parallel's replacement strings in a command template.
 *
 *   {}    the input                       dir/sub/file.tar.gz
 *   {.}   without its extension           dir/sub/file.tar
 *   {/}   its base name                   file.tar.gz
 *   {//}  its directory ("." if none)     dir/sub
 *   {/.}  base name without extension     file.tar
 *   {#}   the task's sequence number (1, 2, ...)
 * The extension is the text from the last "." of the base name, unless that
 * dot starts the base name (".bashrc" has none). Any other text in braces,
 * like awk's '{print $1}', is left as it is.
 */
#ifndef RATCHET_CLI_PLACEHOLDER_H
#define RATCHET_CLI_PLACEHOLDER_H

#include <stdbool.h>
#include <stdint.h>

#include "sbuf.h"

/* True if s contains at least one placeholder. */
bool cli_has_placeholder(const char *s);

/*
 * Appends tmpl to b with every placeholder replaced by its value for input
 * and seq; when quote is true each value is shell-quoted (cli_shell_quote)
 * so that it stays one word whatever it holds. Returns 0 or -ENOMEM.
 */
int cli_expand(cli_sbuf *b, const char *tmpl, const char *input, uint64_t seq,
               bool quote);

/*
 * Appends s to b as one POSIX shell word: unchanged if it is non-empty and
 * made only of letters, digits and -_./:,+@%^, otherwise in single quotes
 * with each ' written as '\''. Returns 0 or -ENOMEM.
 */
int cli_shell_quote(cli_sbuf *b, const char *s);

#endif
