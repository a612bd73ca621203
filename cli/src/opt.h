/*
 * opt.h - a small command-line option scanner shared by every subcommand.
 *
 * Unlike getopt_long it prints nothing: every error becomes a cli_err that
 * names the option (and value), so that each subcommand reports them the
 * same way. Options end at the first operand (the COMMAND of `ratchet run`
 * keeps its own flags), at "--", or at the end of argv.
 *
 * Accepted forms: --name, --name=value, --name value (for options that
 * require a value), -x, -xVALUE, -x VALUE, and bundles of flags (-0k).
 * Options with an optional value (--cache[=DIR]) take it only after "=".
 * Long names must match exactly: no abbreviations, so that adding an
 * option never changes what an existing command line means.
 */
#ifndef RATCHET_CLI_OPT_H
#define RATCHET_CLI_OPT_H

#include <stdbool.h>
#include <stddef.h>

#include "diag.h"

typedef enum cli_arg_kind {
  CLI_ARG_NONE = 0,
  CLI_ARG_REQUIRED = 1,
  CLI_ARG_OPTIONAL = 2
} cli_arg_kind;

/* One option. id is returned by cli_opt_next and must be > 0. */
typedef struct cli_opt_def {
  const char *name; /* long name without "--" */
  char short_name;  /* 0 for none */
  cli_arg_kind arg;
  int id;
  const char *metavar; /* for help: "N", "DURATION", NULL */
  const char *help;    /* one line */
} cli_opt_def;

typedef struct cli_opt_scan {
  int argc;
  char **argv;     /* borrowed */
  int index;       /* next argv element; the first operand at the end */
  size_t in_short; /* position inside a bundle of short flags, 0 if none */
  const cli_opt_def *defs;
  size_t ndefs;
  char label[80]; /* the last option as the user wrote it: "--jobs", "-j" */
} cli_opt_scan;

/* Starts scanning argv[first..argc-1]. */
void cli_opt_init(cli_opt_scan *s, int argc, char **argv, int first,
                  const cli_opt_def *defs, size_t ndefs);

/*
 * The next option: returns its id (> 0) with *value set to its value (NULL
 * when it has none; borrowed from argv); 0 at the end of the options
 * (s->index is then the first operand; a "--" has been skipped); -EINVAL
 * with a message in e for an unknown option, a missing value, or a value
 * given to an option that takes none. s->label names the option found.
 */
int cli_opt_next(cli_opt_scan *s, const char **value, cli_err *e);

/* Finds the definition of a long name (for config files), or NULL. */
const cli_opt_def *cli_opt_find(const cli_opt_def *defs, size_t ndefs,
                                const char *name);

/* Prints one help line per option: "  -j, --jobs N   help". */
void cli_opt_print_help(const cli_opt_def *defs, size_t ndefs, void *file);

#endif
