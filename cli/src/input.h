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
