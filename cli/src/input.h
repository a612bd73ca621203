/*
 * input.h - the inputs of `ratchet run`, one record at a time.
 *
 * Sources: the lines of a file descriptor (stdin, or -a FILE), its
 * NUL-separated records (-0/--null), or a list (::: A B C). A line is the
 * text before "\n" ("\r" is kept, as GNU parallel keeps it); the last
 * record counts even without a terminator; empty records are inputs too.
 * A NUL byte inside a line is refused (it cannot be an argument): use -0.
 * Records are read in 64 KiB pieces and never need the whole input in
 * memory. A slow producer on a pipe can be read without blocking the
 * caller's event loop (cli_input_set_paced).
 */
#ifndef RATCHET_CLI_INPUT_H
#define RATCHET_CLI_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"

typedef struct cli_input cli_input;

/* Reads records separated by sep ('\n' or '\0') from fd; closes fd in
 * cli_input_free if own_fd. name labels messages ("stdin", the path).
 * 0 and *out, or -ENOMEM. */
int cli_input_from_fd(int fd, bool own_fd, char sep, const char *name,
                      cli_input **out);

/* Opens path for reading ("-" is stdin). 0 and *out; a negated errno with a
 * message naming flag and path. */
int cli_input_from_file(const char *flag, const char *path, char sep,
                        cli_input **out, cli_err *e);

/* Records from a list (borrowed: items must outlive the reader). */
int cli_input_from_list(char *const *items, size_t n, cli_input **out);

/* One ::: list: items [first, first + n) of the run's inputs; linked when
 * it came with :::+ (taken side by side with the list before it). */
typedef struct cli_input_group {
  size_t first, n;
  bool linked;
} cli_input_group;

/*
 * Records from several lists, GNU parallel's way: every combination of
 * one value from each set of linked lists, the last set varying fastest
 * (::: a b ::: 1 2 gives a 1, a 2, b 1, b 2). Lists linked with :::+ go
 * side by side as far as the shortest (::: a b c :::+ 1 2 gives a 1,
 * b 2). With link (--link) every list goes side by side with every other,
 * as far as the longest, the shorter ones starting over (a 1, b 2, c 1);
 * an empty list then gives nothing. A record's values are its fields
 * (cli_input_fields), and the record itself is them joined by spaces.
 * items and groups are borrowed. 0 and *out, or -ENOMEM.
 */
int cli_input_from_lists(char *const *items, const cli_input_group *groups,
                         size_t ngroups, bool link, cli_input **out);

/* Splits every record at each occurrence of sep (a non-empty string) into
 * fields, --colsep's way. */
int cli_input_set_colsep(cli_input *in, const char *sep);

/* The values of the record last returned: n of them, or *fields NULL and
 * 0 when the record is a single value. Borrowed until the next call. */
void cli_input_fields(const cli_input *in, const char *const **fields,
                      size_t *n);

/*
 * The next record: returns 1 with *rec (NUL-terminated, borrowed until the
 * next call) and *len; 0 at the end; -EAGAIN when paced and out of reads
 * (no message; call again after cli_input_readable); a negated errno with a
 * message in e (a read error, a NUL inside a line) naming the source and record
 * number.
 */
int cli_input_next(cli_input *in, const char **rec, size_t *len, cli_err *e);

/* The descriptor an fd reader reads (-1 for a list). */
int cli_input_fd(const cli_input *in);

/* Paced reading, for a descriptor that may block (a pipe, a terminal, a
 * socket) read from an event loop: cli_input_next then calls read() at
 * most once per cli_input_readable() (the loop saw the descriptor
 * readable, so that read() does not block) and returns -EAGAIN when it
 * needs more bytes than it may read; it also returns -EAGAIN, never an
 * error, if the descriptor is non-blocking and has nothing yet. */
void cli_input_set_paced(cli_input *in);
void cli_input_readable(cli_input *in);

/* True if the record last returned ended at the end of the input without
 * a separator (a line cut short, for the job log reader). */
bool cli_input_unterminated(const cli_input *in);

/* Records returned so far. */
uint64_t cli_input_count(const cli_input *in);

/* NULL is a no-op. */
void cli_input_free(cli_input *in);

#endif
