/*
 * backoff_opts.h - the names of `--backoff` and `--jitter`.
 *
 *   --backoff exp|exponential   base, 2*base, 4*base, ... capped at max
 *             linear            base, 2*base, 3*base, ...
 *             constant          base every time
 *             decorrelated      AWS's decorrelated jitter: a random delay
 *                               in [base, 3 * previous], capped at max
 *   --jitter  full              a random delay in [0, d]      (default)
 *             equal             d/2 + a random delay in [0, d/2]
 *             none              d itself
 *             P%                d +- up to P% (0 < P <= 100)
 * With --backoff decorrelated the jitter is part of the backoff and
 * --jitter may not be given.
 */
#ifndef RATCHET_CLI_BACKOFF_OPTS_H
#define RATCHET_CLI_BACKOFF_OPTS_H

#include "diag.h"

typedef enum cli_backoff_kind {
  CLI_BACKOFF_EXPONENTIAL = 0,
  CLI_BACKOFF_LINEAR = 1,
  CLI_BACKOFF_CONSTANT = 2,
  CLI_BACKOFF_DECORRELATED = 3
} cli_backoff_kind;

typedef enum cli_jitter_kind {
  CLI_JITTER_FULL = 0,
  CLI_JITTER_EQUAL = 1,
  CLI_JITTER_NONE = 2,
  CLI_JITTER_PROPORTIONAL = 3
} cli_jitter_kind;

typedef struct cli_jitter {
  cli_jitter_kind kind;
  double percent; /* CLI_JITTER_PROPORTIONAL only */
} cli_jitter;

int cli_parse_backoff_kind(const char *flag, const char *s, cli_backoff_kind *k,
                           cli_err *e);
int cli_parse_jitter(const char *flag, const char *s, cli_jitter *j,
                     cli_err *e);

/* "exponential", "linear", ...; "full", "equal", "none", "proportional". */
const char *cli_backoff_kind_name(cli_backoff_kind k);
const char *cli_jitter_kind_name(cli_jitter_kind k);

#endif
