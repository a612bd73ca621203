/*
 * run_progress.c - the progress line (run_progress.h).
 *
 * A uv_timer redraws the line from the driver's counters, so that the cost
 * does not grow with the task rate: at most ten writes a second however
 * fast tasks finish. On a terminal the line is rewritten in place ("\r"
 * and erase-to-end-of-line) and erased before task output is printed; on
 * anything else a plain line goes out once a second, and a last one at the
 * end. The rate is tasks done over the time since the start; the time left
 * is the tasks still to do over that rate, shown once the total is known.
 */
#include "run_progress.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ratchet/alloc.h"

struct cli_progress {
  uv_timer_t timer;
  int fd;
  bool tty;
  bool drawn; /* a line is on the terminal */
  uint64_t start_ms;
  const cli_progress_counts *c;
};

static void format_eta(char *buf, size_t n, double secs) {
  uint64_t s = (uint64_t)(secs + 0.5);
  if (s >= 3600)
    snprintf(buf, n, "%u:%02u:%02u", (unsigned)(s / 3600),
             (unsigned)(s / 60 % 60), (unsigned)(s % 60));
  else
    snprintf(buf, n, "%u:%02u", (unsigned)(s / 60), (unsigned)(s % 60));
}

static void draw(cli_progress *p, bool final) {
  const cli_progress_counts *c = p->c;
  double secs = (double)(uv_now(p->timer.loop) - p->start_ms) / 1000.0;
  double rate = secs > 0 ? (double)c->done / secs : 0.0;
  char total[32], eta[48] = "";
  if (c->total != 0)
    snprintf(total, sizeof total, "%llu", (unsigned long long)c->total);
  else
    snprintf(total, sizeof total, "?");
  if (!final && c->total != 0 && rate > 0 && c->total >= c->done) {
    char t[24];
    format_eta(t, sizeof t, (double)(c->total - c->done) / rate);
    snprintf(eta, sizeof eta, ", ETA %s", t);
  } else if (final) {
    char t[24];
    format_eta(t, sizeof t, secs);
    snprintf(eta, sizeof eta, " in %s", t);
  }
  char line[256];
  int n = snprintf(
      line, sizeof line,
      "%sratchet: %llu/%s done, %llu failed, %llu retried, "
      "%llu cached, %.1f/s%s%s",
      p->tty ? "\r\033[K" : "", (unsigned long long)c->done, total,
      (unsigned long long)c->failed, (unsigned long long)c->retried,
      (unsigned long long)c->cached, rate, eta, p->tty && !final ? "" : "\n");
  if (n > 0) {
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    ssize_t w = write(p->fd, line, len);
    (void)w; /* a progress line that cannot be written is not an error */
  }
  p->drawn = p->tty && !final;
}

static void on_tick(uv_timer_t *t) {
  cli_progress *p = t->data;
  if (p->tty) {
    draw(p, false);
    return;
  }
  /* Once a second off a terminal (the timer runs at 10 Hz). */
  uint64_t now = uv_now(t->loop);
  if ((now - p->start_ms) / 1000 != (now - p->start_ms - 100) / 1000)
    draw(p, false);
}

int cli_progress_new(uv_loop_t *loop, int fd, const cli_progress_counts *counts,
                     cli_progress **out) {
  cli_progress *p = ratchet_calloc(1, sizeof *p);
  if (p == NULL)
    return -ENOMEM;
  p->fd = fd;
  p->tty = isatty(fd) != 0;
  p->c = counts;
  int rc = uv_timer_init(loop, &p->timer);
  if (rc != 0) {
    ratchet_free(p);
    return rc;
  }
  p->timer.data = p;
  uv_update_time(loop);
  p->start_ms = uv_now(loop);
  (void)uv_timer_start(&p->timer, on_tick, 100, 100);
  /* The line must not keep the loop alive on its own. */
  uv_unref((uv_handle_t *)&p->timer);
  *out = p;
  return 0;
}

void cli_progress_clear(cli_progress *p) {
  if (p == NULL || !p->drawn)
    return;
  ssize_t w = write(p->fd, "\r\033[K", 4);
  (void)w;
  p->drawn = false;
}

static void on_closed(uv_handle_t *h) {
  ratchet_free(h->data);
}

void cli_progress_close(cli_progress *p) {
  if (p == NULL)
    return;
  uv_update_time(p->timer.loop);
  draw(p, true);
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, on_closed);
}
