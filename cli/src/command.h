/*
 * command.h - what `ratchet run` executes for one input.
 *
 * The rule: the command runs without a shell, argv as given, unless it is a
 * single argument containing shell syntax (blanks, quotes, | & ; < > ( ) $ `
 * \ * ? [ ] # ~) or --shell is given. Then it runs as `/bin/sh -c SCRIPT`,
 * SCRIPT being the arguments joined by spaces, and every value substituted
 * into it is shell-quoted: an input is never pasted unquoted into a shell.
 * Without a placeholder anywhere, the input is appended as one more
 * argument (quoted too in a script); an input of several values (several
 * ::: lists, --colsep) is appended as one argument per value.
 */
#ifndef RATCHET_CLI_COMMAND_H
#define RATCHET_CLI_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "placeholder.h"

/* The command as the user gave it, checked once. */
typedef struct cli_command_template {
  char *const *tokens; /* borrowed from argv or the run options */
  size_t ntokens;
  bool shell;           /* runs through /bin/sh -c */
  bool has_placeholder; /* else the input is appended */
} cli_command_template;

/* One expanded command. */
typedef struct cli_command {
  bool shell;
  char **argv; /* NULL-terminated; with shell, argv[0] is the script */
  size_t argc;
  char *display; /* a one-line form for logs: argv shell-quoted, or the
                    script */
} cli_command;

/* True if a single-argument command s needs a shell. */
bool cli_needs_shell(const char *s);

/*
 * Checks the tokens and decides shell or not. Returns 0; -EINVAL with a
 * message when there is no token or the first (the program) is empty.
 */
int cli_command_template_init(cli_command_template *t, char *const *tokens,
                              size_t ntokens, bool force_shell, cli_err *e);

/* Expands the template for input (NUL-terminated) and seq into *out (free
 * with cli_command_free). 0 or -ENOMEM (*out then empty). */
int cli_command_expand(const cli_command_template *t, const char *input,
                       uint64_t seq, cli_command *out);

/* The same for an input of several values (placeholder.h). */
int cli_command_expand_values(const cli_command_template *t,
                              const cli_values *v, uint64_t seq,
                              cli_command *out);

void cli_command_free(cli_command *c);

#endif
