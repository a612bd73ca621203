/*
 * run_signals.c - SIGINT and SIGTERM for `ratchet run` (run_signals.h).
 *
 * Two uv_signal_t handles call the driver with a count per signal, so the
 * driver can tell the first SIGINT (stop launching, let running tasks end
 * within the kill grace) from the second (kill now). The handles are
 * unreferenced: a run ends when its work is done, not when nobody sends a
 * signal. The memory is freed when the second handle's close completes.
 */
#include "run_signals.h"

#include <errno.h>
#include <signal.h>

#include "ratchet/alloc.h"

struct cli_signals {
  uv_signal_t sig[2];
  unsigned count[2];
  int open; /* handles not yet closed */
  cli_signal_fn fn;
  void *ctx;
};

static const int watched[2] = {SIGINT, SIGTERM};

static void on_signal(uv_signal_t *h, int signum) {
  cli_signals *s = h->data;
  int i = signum == SIGINT ? 0 : 1;
  s->count[i]++;
  s->fn(s->ctx, signum, s->count[i]);
}

static void on_closed(uv_handle_t *h) {
  cli_signals *s = h->data;
  if (--s->open == 0)
    ratchet_free(s);
}

int cli_signals_new(uv_loop_t *loop, cli_signal_fn fn, void *ctx,
                    cli_signals **out) {
  cli_signals *s = ratchet_calloc(1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->fn = fn;
  s->ctx = ctx;
  int rc = 0;
  for (int i = 0; i < 2 && rc == 0; i++) {
    rc = uv_signal_init(loop, &s->sig[i]);
    if (rc != 0)
      break;
    s->open++;
    s->sig[i].data = s;
    rc = uv_signal_start(&s->sig[i], on_signal, watched[i]);
    uv_unref((uv_handle_t *)&s->sig[i]);
  }
  if (rc != 0) {
    int n = s->open;
    if (n == 0)
      ratchet_free(s);
    for (int i = 0; i < n; i++)
      uv_close((uv_handle_t *)&s->sig[i], on_closed);
    return rc;
  }
  *out = s;
  return 0;
}

void cli_signals_close(cli_signals *s) {
  if (s == NULL)
    return;
  for (int i = 0; i < 2; i++)
    uv_close((uv_handle_t *)&s->sig[i], on_closed);
}
