/*
 * run_signals.h - SIGINT and SIGTERM during `ratchet run`, delivered on
 * the loop (uv_signal) so that the driver reacts between callbacks and
 * never inside one.
 */
#ifndef RATCHET_CLI_RUN_SIGNALS_H
#define RATCHET_CLI_RUN_SIGNALS_H

#include <uv.h>

/* Called on the loop with the signal and how many times it has come (1 for
 * the first). */
typedef void (*cli_signal_fn)(void *ctx, int signum, unsigned count);

typedef struct cli_signals cli_signals;

/* Watches SIGINT and SIGTERM; the handles do not keep the loop alive.
 * 0 and *out; -ENOMEM or libuv's error (nothing is left watching). */
int cli_signals_new(uv_loop_t *loop, cli_signal_fn fn, void *ctx,
                    cli_signals **out);

/* Stops watching (the default dispositions come back) and frees s once
 * libuv has closed the handles. NULL is a no-op. */
void cli_signals_close(cli_signals *s);

#endif
