/*
 * duration.h - durations and sizes as the command line writes them.
 *
 * A duration is one or more NUMBER UNIT groups, "250ms", "2s", "1m30s",
 * "1.5h", or a plain number of seconds ("30", "0.5"), as GNU parallel's
 * --timeout and sleep(1) read it. Units: ns, us, ms, s, m, h, d. Negative
 * values, empty strings, unknown units and values past about 584 years
 * (UINT64_MAX ns) are refused.
 *
 * A size is a number with an optional binary unit: "512", "64K", "1.5M",
 * "2GiB", "1T"; K, KB, KiB (any case) all mean 1024 bytes, M 1024^2, G
 * 1024^3, T 1024^4; "B" or nothing means bytes.
 */
#ifndef RATCHET_CLI_DURATION_H
#define RATCHET_CLI_DURATION_H

#include <stdint.h>

#include "diag.h"

/* Parses s for the option flag (named in the message, e.g. "--timeout").
 * Returns 0 and *ns; -EINVAL with a message in e (*ns unchanged). */
int cli_parse_duration(const char *flag, const char *s, uint64_t *ns,
                       cli_err *e);

/* Parses a size for flag. 0 and *bytes, or -EINVAL with a message. */
int cli_parse_size(const char *flag, const char *s, uint64_t *bytes,
                   cli_err *e);

/* Parses an unsigned decimal integer in [min, max] for flag.
 * 0 and *out, or -EINVAL with a message naming the range. */
int cli_parse_uint(const char *flag, const char *s, uint64_t min, uint64_t max,
                   uint64_t *out, cli_err *e);

/* Parses a percentage "P%" or "P" (0 < P <= 100, decimals allowed) into
 * *pct. 0, or -EINVAL with a message. */
int cli_parse_percent(const char *flag, const char *s, double *pct, cli_err *e);

/* Writes ns as the shortest exact duration string ("1m30s", "250ms",
 * "0s") into buf (at least 64 bytes); returns buf. */
char *cli_format_duration(uint64_t ns, char *buf);

#endif
