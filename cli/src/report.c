/*
 * report.c - writes the record of a run as one HTML page (report.h).
 *
 * The page is printed top to bottom with stdio into FILE.tmp, then
 * renamed. Charts are inline SVG drawn here: coordinates are computed in
 * a fixed viewBox (the SVG scales with the page), colours come from CSS
 * classes in the page's own <style>, tooltips are SVG <title> elements,
 * so the page needs no script at all (and so cannot log a console
 * error). Everything that came from the run - commands, inputs, error
 * sentences, stderr lines, kind names - passes through esc(), which
 * escapes the five HTML metacharacters and replaces control characters,
 * so a task printing "<script>" shows "<script>".
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ratchet/alloc.h"
#include "ratchet/breaker.h"
#include "ratchet/status.h"

#define SVG_W        1200
#define LEFT         96
#define RIGHT        16
#define PLOT_W       (SVG_W - LEFT - RIGHT)
#define MAX_ROWS     64
#define MAX_RECTS    4000
#define MAX_MARKS    3000
#define CHART_W      580
#define CHART_H      230
#define CHART_LEFT   56
#define CHART_BOTTOM 36
#define MAX_BARS     60

static void pf(FILE *f, const char *fmt, ...) CLI_PRINTF(2, 3);

static void pf(FILE *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
}

/* Text from the run, made safe inside an element or a quoted attribute.
 * Newlines and tabs stay (for <pre>); other control bytes become U+FFFD. */
static void esc(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '&':
      fputs("&amp;", f);
      break;
    case '<':
      fputs("&lt;", f);
      break;
    case '>':
      fputs("&gt;", f);
      break;
    case '"':
      fputs("&quot;", f);
      break;
    case '\'':
      fputs("&#39;", f);
      break;
    default:
      if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
        fputs("\xef\xbf\xbd", f);
      else
        fputc(*p, f);
    }
  }
}

static const char *fmt_dur(uint64_t ns, char *buf, size_t n) {
  double v = (double)ns;
  if (ns < 1000u)
    snprintf(buf, n, "%llu ns", (unsigned long long)ns);
  else if (ns < 1000000u)
    snprintf(buf, n, "%.3g µs", v / 1e3);
  else if (ns < UINT64_C(1000000000))
    snprintf(buf, n, "%.3g ms", v / 1e6);
  else if (ns < UINT64_C(60000000000))
    snprintf(buf, n, "%.3g s", v / 1e9);
  else if (ns < UINT64_C(3600000000000))
    snprintf(buf, n, "%um%02us", (unsigned)(ns / UINT64_C(60000000000)),
             (unsigned)(ns / UINT64_C(1000000000) % 60));
  else
    snprintf(buf, n, "%uh%02um", (unsigned)(ns / UINT64_C(3600000000000)),
             (unsigned)(ns / UINT64_C(60000000000) % 60));
  return buf;
}

/* A tick label for a time axis whose step is step_ns. */
static const char *fmt_tick(uint64_t ns, uint64_t step_ns, char *buf,
                            size_t n) {
  if (step_ns >= UINT64_C(1000000000))
    snprintf(buf, n, "%gs", (double)ns / 1e9);
  else if (step_ns >= UINT64_C(1000000))
    snprintf(buf, n, "%gms", (double)ns / 1e6);
  else
    snprintf(buf, n, "%gµs", (double)ns / 1e3);
  return buf;
}

/* 1, 2 or 5 times a power of ten, at least raw. */
static uint64_t nice_step(uint64_t raw) {
  uint64_t mag = 1;
  while (mag <= raw / 10)
    mag *= 10;
  if (mag >= raw)
    return mag;
  if (2 * mag >= raw)
    return 2 * mag;
  if (5 * mag >= raw)
    return 5 * mag;
  return 10 * mag;
}

static double nice_ceil(double v) {
  if (v <= 0)
    return 1;
  double mag = pow(10, floor(log10(v)));
  for (int m = 1; m <= 10; m *= 2) {
    if (m * mag >= v)
      return m * mag;
    if (m == 2 && 5 * mag >= v)
      return 5 * mag;
  }
  return 10 * mag;
}

/* The CSS class of a status: ok, failed, timeout, lost, other. */
static const char *st_class(int status) {
  switch (status) {
  case RATCHET_STATUS_OK:
    return "ok";
  case RATCHET_STATUS_FAILED:
    return "failed";
  case RATCHET_STATUS_TIMEOUT:
    return "timeout";
  case RATCHET_STATUS_LOST:
  case RATCHET_STATUS_POISON:
    return "lost";
  default:
    return "other";
  }
}

/* For drawing many attempts in one pixel: the worst wins. */
static uint8_t severity(int status) {
  switch (status) {
  case RATCHET_STATUS_OK:
    return 1;
  case RATCHET_STATUS_FAILED:
    return 3;
  case RATCHET_STATUS_TIMEOUT:
    return 4;
  case RATCHET_STATUS_LOST:
  case RATCHET_STATUS_POISON:
    return 5;
  default:
    return 2;
  }
}

static const char *const sev_class[] = {"",       "ok",      "other",
                                        "failed", "timeout", "lost"};

static const char *status_name(int s) {
  return ratchet_status_name((ratchet_status)s);
}

/* ---- the page --------------------------------------------------------- */

static const char css[] =
    ":root{--ok:#2e9d55;--failed:#d93838;--timeout:#f08c00;--lost:#7b3fa0;"
    "--other:#9aa0a6;--retry:#e6a700;--ink:#1f2328;--muted:#656d76;"
    "--line:#d8dee4;--bg:#f6f8fa}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;padding:24px 32px;font:14px/1.45 system-ui,-apple-system,"
    "'Segoe UI',sans-serif;color:var(--ink);background:#fff}\n"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}\n"
    "code,pre{font-family:ui-monospace,'DejaVu Sans Mono',monospace;"
    "font-size:12.5px}\n"
    ".cmd{background:var(--bg);border:1px solid var(--line);"
    "border-radius:6px;padding:6px 10px;display:inline-block;margin:6px 0}\n"
    ".meta,.note{color:var(--muted)}\n"
    ".cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}\n"
    ".card{border:1px solid var(--line);border-radius:8px;padding:8px 14px;"
    "min-width:110px}\n"
    ".card b{display:block;font-size:20px}.card span{color:var(--muted);"
    "font-size:12px}\n"
    ".card.bad b{color:var(--failed)}.card.good b{color:var(--ok)}\n"
    "svg{display:block;width:100%;height:auto}\n"
    "svg text{font-size:11px;fill:var(--muted)}\n"
    ".grid{stroke:var(--line);stroke-width:1}\n"
    ".s-ok{fill:var(--ok)}.s-failed{fill:var(--failed)}"
    ".s-timeout{fill:var(--timeout)}.s-lost{fill:var(--lost)}"
    ".s-other{fill:var(--other)}\n"
    ".m-retry{fill:var(--retry);stroke:#8a6400;stroke-width:.6}\n"
    ".m-lost{stroke:var(--lost);stroke-width:2;fill:none}\n"
    ".m-worker{stroke:#555;stroke-width:1.5}.m-hung{stroke:var(--failed);"
    "stroke-width:2}\n"
    ".m-breaker{stroke:var(--failed);stroke-width:1.5;stroke-dasharray:5 3}\n"
    ".bar{fill:#4a7fd4}\n"
    ".legend{display:flex;flex-wrap:wrap;gap:14px;margin:6px 0;"
    "color:var(--muted);font-size:12px}\n"
    ".legend i{display:inline-block;width:12px;height:12px;"
    "border-radius:2px;margin-right:5px;vertical-align:-2px}\n"
    ".two{display:grid;grid-template-columns:1fr 1fr;gap:24px}\n"
    "table{border-collapse:collapse;width:100%;font-size:13px}\n"
    "th,td{border-bottom:1px solid var(--line);padding:5px 8px;"
    "text-align:left;vertical-align:top}\n"
    "th{background:var(--bg);font-weight:600}\n"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    "td.task{max-width:520px;overflow-wrap:anywhere}\n"
    ".st{display:inline-block;padding:0 6px;border-radius:10px;color:#fff;"
    "font-size:12px}\n"
    ".st.ok{background:var(--ok)}.st.failed{background:var(--failed)}"
    ".st.timeout{background:var(--timeout)}.st.lost{background:var(--lost)}"
    ".st.other{background:var(--other)}\n"
    "pre.tail{background:#1f2328;color:#e6edf3;border-radius:6px;"
    "padding:8px 10px;margin:4px 0 0;white-space:pre-wrap;"
    "overflow-wrap:anywhere;max-height:14em;overflow:auto}\n"
    "footer{margin-top:32px;color:var(--muted);font-size:12px}\n";

static void head(FILE *f, const cli_rec_view *v, const cli_report_info *info) {
  char when[64] = "";
  time_t secs = (time_t)(v->start_wall_ms / 1000u);
  struct tm tm;
  if (gmtime_r(&secs, &tm) != NULL)
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  char dur[32];
  pf(f,
     "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
     "<meta name=\"viewport\" content=\"width=device-width, "
     "initial-scale=1\">\n<link rel=\"icon\" href=\"data:,\">\n"
     "<title>ratchet run report</title>\n<style>\n%s</style>\n</head>\n"
     "<body>\n<h1>ratchet run</h1>\n<div class=\"cmd\"><code>",
     css);
  esc(f, info->command != NULL ? info->command : "");
  pf(f,
     "</code></div>\n<p class=\"meta\">started %s &middot; ran %s &middot; "
     "%u worker%s &middot; ",
     when, fmt_dur(v->end_ns, dur, sizeof dur), (unsigned)info->jobs,
     info->jobs == 1 ? "" : "s");
  if (info->signal != 0)
    pf(f, "stopped by signal %d, exit status %d", info->signal,
       info->exit_status);
  else
    pf(f, "exit status %d", info->exit_status);
  pf(f, "</p>\n");
}

static uint64_t sum_status(const cli_rec_kind *k) {
  uint64_t n = 0;
  for (unsigned s = 0; s < RATCHET_STATUS_COUNT; s++)
    n += k->by_status[s];
  return n;
}

static void card(FILE *f, const char *cls, const char *value,
                 const char *label) {
  pf(f, "<div class=\"card %s\"><b>%s</b><span>%s</span></div>\n", cls, value,
     label);
}

static void cards(FILE *f, const cli_rec_view *v) {
  const cli_rec_kind *t = &v->total;
  uint64_t tasks = sum_status(t);
  uint64_t ok = t->by_status[RATCHET_STATUS_OK];
  char b[64];
  pf(f, "<div class=\"cards\">\n");
  snprintf(b, sizeof b, "%llu", (unsigned long long)tasks);
  card(f, "", b, "tasks");
  snprintf(b, sizeof b, "%llu", (unsigned long long)ok);
  card(f, "good", b, "succeeded");
  snprintf(b, sizeof b, "%llu", (unsigned long long)(tasks - ok));
  card(f, tasks > ok ? "bad" : "", b, "failed");
  snprintf(b, sizeof b, "%llu", (unsigned long long)t->attempts);
  card(f, "", b, "attempts");
  snprintf(b, sizeof b, "%llu", (unsigned long long)t->retries);
  card(f, "", b, "retries");
  snprintf(b, sizeof b, "%llu", (unsigned long long)t->cached);
  card(f, "", b, "cached");
  double secs = (double)v->end_ns / 1e9;
  snprintf(b, sizeof b, "%.1f/s", secs > 0 ? (double)tasks / secs : 0.0);
  card(f, "", b, "throughput");
  char d[32];
  card(f, "", fmt_dur(ratchet_histogram_quantile(&t->run, 0.5), d, sizeof d),
       "p50 run time");
  card(f, "", fmt_dur(ratchet_histogram_quantile(&t->run, 0.99), d, sizeof d),
       "p99 run time");
  pf(f, "</div>\n");
}

/* ---- the timeline ----------------------------------------------------- */

typedef struct rows {
  int32_t offset[64]; /* first row of each pool */
  int32_t n_pools;
  const int32_t *workers;
  int n;      /* rows drawn */
  int total;  /* worker slots seen */
  double rh;  /* row height */
  double top; /* y of the first row */
  uint64_t t; /* the time axis' end, ns */
} rows;

static int row_of(const rows *r, int32_t pool, int32_t worker) {
  if (pool < 0 || pool >= r->n_pools || worker < 0 ||
      worker >= r->workers[pool])
    return -1;
  int row = r->offset[pool] + worker;
  return row < r->n ? row : -1;
}

static double x_of(const rows *r, uint64_t t_ns) {
  return LEFT + (double)t_ns / (double)r->t * PLOT_W;
}

static void legend(FILE *f) {
  pf(f, "<div class=\"legend\">"
        "<span><i style=\"background:var(--ok)\"></i>ok</span>"
        "<span><i style=\"background:var(--failed)\"></i>failed</span>"
        "<span><i style=\"background:var(--timeout)\"></i>timeout</span>"
        "<span><i style=\"background:var(--lost)\"></i>lost (worker "
        "died)</span>"
        "<span><i style=\"background:var(--other)\"></i>other</span>"
        "<span><i style=\"background:var(--retry)\"></i>&#9660; retry "
        "scheduled</span>"
        "<span>&#10005; attempt lost</span>"
        "<span>| worker exit / restart</span>"
        "<span>&#8942; breaker change</span></div>\n");
}

static void slice_rects(FILE *f, const cli_rec_view *v, const rows *r) {
  char d[32];
  if (v->n_slices <= MAX_RECTS) {
    for (size_t i = 0; i < v->n_slices; i++) {
      const cli_rec_slice *s = &v->slices[i];
      int row = row_of(r, s->pool, s->worker);
      if (row < 0)
        continue;
      double x = x_of(r, s->start_ns);
      double w = (double)s->dur_ns / (double)r->t * PLOT_W;
      if (w < 1.0)
        w = 1.0;
      pf(f,
         "<rect class=\"s-%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
         "height=\"%.2f\" rx=\"1.5\"><title>",
         st_class(s->status), x, r->top + row * r->rh + 2, w, r->rh - 4);
      esc(f, s->name);
      pf(f, "\nattempt %u: %s in %s", s->attempt, status_name(s->status),
         fmt_dur(s->dur_ns, d, sizeof d));
      if (s->has_exit && s->term_signal != 0)
        pf(f, ", signal %d", s->term_signal);
      else if (s->has_exit)
        pf(f, ", exit %d", s->exit_code);
      if (s->error[0] != '\0') {
        fputs("\n", f);
        esc(f, s->error);
      }
      pf(f, "</title></rect>\n");
    }
    return;
  }
  /* Too many to draw one by one: the worst status per pixel column. */
  uint8_t *grid = ratchet_calloc((size_t)r->n * PLOT_W, 1);
  if (grid == NULL)
    return;
  for (size_t i = 0; i < v->n_slices; i++) {
    const cli_rec_slice *s = &v->slices[i];
    int row = row_of(r, s->pool, s->worker);
    if (row < 0)
      continue;
    size_t c0 = (size_t)((double)s->start_ns / (double)r->t * PLOT_W);
    size_t c1 =
        (size_t)((double)(s->start_ns + s->dur_ns) / (double)r->t * PLOT_W);
    if (c0 >= PLOT_W)
      c0 = PLOT_W - 1;
    if (c1 >= PLOT_W)
      c1 = PLOT_W - 1;
    uint8_t sev = severity(s->status);
    for (size_t c = c0; c <= c1; c++)
      if (grid[(size_t)row * PLOT_W + c] < sev)
        grid[(size_t)row * PLOT_W + c] = sev;
  }
  for (int row = 0; row < r->n; row++) {
    const uint8_t *g = grid + (size_t)row * PLOT_W;
    size_t c = 0;
    while (c < PLOT_W) {
      size_t e = c + 1;
      while (e < PLOT_W && g[e] == g[c])
        e++;
      if (g[c] != 0)
        pf(f,
           "<rect class=\"s-%s\" x=\"%d\" y=\"%.2f\" width=\"%d\" "
           "height=\"%.2f\"/>\n",
           sev_class[g[c]], LEFT + (int)c, r->top + row * r->rh + 2,
           (int)(e - c), r->rh - 4);
      c = e;
    }
  }
  ratchet_free(grid);
}

static void instant_marks(FILE *f, const cli_rec_view *v, const rows *r) {
  char d[32];
  double bottom = r->top + r->n * r->rh;
  size_t drawn = 0;
  for (size_t i = 0; i < v->n_instants && drawn < MAX_MARKS; i++) {
    const cli_rec_instant *in = &v->instants[i];
    double x = x_of(r, in->ts_ns);
    int row = row_of(r, in->pool, in->worker);
    double y = row >= 0 ? r->top + row * r->rh : 0;
    switch (in->type) {
    case RATCHET_EV_RETRY:
      if (row < 0)
        continue;
      pf(f,
         "<path class=\"m-retry\" d=\"M%.2f %.2fL%.2f %.2fL%.2f %.2fZ\">"
         "<title>retry",
         x - 4, y, x + 4, y, x, y + 7);
      if (in->seq != 0)
        pf(f, " of #%llu", (unsigned long long)in->seq);
      pf(f, " after attempt %u (%s), in %s</title></path>\n", in->attempt,
         status_name(in->status), fmt_dur(in->delay_ns, d, sizeof d));
      break;
    case RATCHET_EV_LOST:
      if (row < 0)
        continue;
      y += r->rh / 2;
      pf(f,
         "<path class=\"m-lost\" d=\"M%.2f %.2fL%.2f %.2fM%.2f %.2fL%.2f "
         "%.2f\"><title>attempt lost: ",
         x - 4, y - 4, x + 4, y + 4, x - 4, y + 4, x + 4, y - 4);
      esc(f, in->message);
      pf(f, "</title></path>\n");
      break;
    case RATCHET_EV_WORKER_EXITED:
    case RATCHET_EV_WORKER_RESTARTING:
    case RATCHET_EV_WORKER_RECYCLED:
    case RATCHET_EV_WORKER_HUNG:
      if (row < 0)
        continue;
      pf(f,
         "<line class=\"%s\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" "
         "y2=\"%.2f\"><title>%s",
         in->type == RATCHET_EV_WORKER_HUNG ? "m-hung" : "m-worker", x, y + 1,
         x, y + r->rh - 1, ratchet_event_type_name(in->type));
      if (in->type == RATCHET_EV_WORKER_EXITED && in->term_signal != 0)
        pf(f, ": signal %d", in->term_signal);
      else if (in->type == RATCHET_EV_WORKER_EXITED)
        pf(f, ": exit status %d", in->status);
      pf(f, "</title></line>\n");
      break;
    case RATCHET_EV_BREAKER:
    case RATCHET_EV_POOL_FAILED:
      pf(f,
         "<line class=\"m-breaker\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" "
         "y2=\"%.2f\"><title>",
         x, r->top, x, bottom);
      if (in->type == RATCHET_EV_BREAKER) {
        pf(f, "breaker ");
        esc(f, in->group);
        pf(f, ": %s &#8594; %s",
           ratchet_breaker_state_name((ratchet_breaker_state)in->from_state),
           ratchet_breaker_state_name((ratchet_breaker_state)in->to_state));
      } else {
        pf(f, "the pool failed: ");
        esc(f, in->message);
      }
      pf(f, "</title></line>\n");
      break;
    default:
      continue;
    }
    drawn++;
  }
}

static void timeline(FILE *f, const cli_rec_view *v) {
  pf(f, "<h2>Timeline</h2>\n");
  rows r;
  memset(&r, 0, sizeof r);
  r.n_pools = v->n_pools < 64 ? v->n_pools : 64;
  r.workers = v->workers_per_pool;
  for (int32_t p = 0; p < r.n_pools; p++) {
    r.offset[p] = r.total;
    r.total += v->workers_per_pool[p];
  }
  r.n = r.total < MAX_ROWS ? r.total : MAX_ROWS;
  if (r.n == 0) {
    pf(f, "<p class=\"note\">No attempt ran on a worker.</p>\n");
    return;
  }
  r.rh = r.n <= 16 ? 24 : r.n <= 32 ? 16 : 10;
  r.top = 6;
  r.t = v->end_ns > 0 ? v->end_ns : 1;
  double plot_bottom = r.top + r.n * r.rh;
  double height = plot_bottom + 26;
  legend(f);
  pf(f,
     "<svg viewBox=\"0 0 %d %.0f\" role=\"img\" aria-label=\"attempts per "
     "worker over time\">\n",
     SVG_W, height);
  /* Rows, their labels, and the time grid. */
  for (int row = 0; row < r.n; row++) {
    int32_t pool = 0;
    while (pool + 1 < r.n_pools && r.offset[pool + 1] <= row)
      pool++;
    double y = r.top + row * r.rh;
    if (row % 2 == 0)
      pf(f,
         "<rect x=\"%d\" y=\"%.2f\" width=\"%d\" height=\"%.2f\" "
         "fill=\"#f6f8fa\"/>\n",
         LEFT, y, PLOT_W, r.rh);
    if (r.n <= 32 || row % 2 == 0) {
      if (r.n_pools > 1)
        pf(f,
           "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">pool %d worker "
           "%d</text>\n",
           LEFT - 8, y + r.rh / 2 + 4, (int)pool, row - r.offset[pool]);
      else
        pf(f,
           "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">worker %d</text>\n",
           LEFT - 8, y + r.rh / 2 + 4, row);
    }
  }
  uint64_t step = nice_step(r.t / 8 > 0 ? r.t / 8 : 1);
  char tick[32];
  for (uint64_t t = 0; t <= r.t; t += step) {
    double x = x_of(&r, t);
    pf(f,
       "<line class=\"grid\" x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" "
       "y2=\"%.2f\"/>\n<text x=\"%.2f\" y=\"%.2f\" "
       "text-anchor=\"middle\">%s</text>\n",
       x, r.top, x, plot_bottom + 4, x, plot_bottom + 18,
       fmt_tick(t, step, tick, sizeof tick));
  }
  slice_rects(f, v, &r);
  instant_marks(f, v, &r);
  pf(f, "</svg>\n");
  if (r.total > r.n)
    pf(f, "<p class=\"note\">%d more workers are not shown.</p>\n",
       r.total - r.n);
  if (v->n_slices > MAX_RECTS)
    pf(f,
       "<p class=\"note\">%zu attempts, drawn per pixel column: the worst "
       "status in a column shows.</p>\n",
       v->n_slices);
  if (v->slices_dropped > 0)
    pf(f,
       "<p class=\"note\">The first %zu attempts are shown; %llu later ones "
       "were not recorded.</p>\n",
       v->n_slices, (unsigned long long)v->slices_dropped);
}

/* ---- the two charts --------------------------------------------------- */

static void chart_open(FILE *f, const char *title, const char *label) {
  pf(f,
     "<div><h2>%s</h2>\n<svg viewBox=\"0 0 %d %d\" role=\"img\" "
     "aria-label=\"%s\">\n",
     title, CHART_W, CHART_H, label);
}

static void y_axis(FILE *f, double max, const char *unit) {
  double plot_h = CHART_H - CHART_BOTTOM - 10;
  for (int i = 0; i <= 4; i++) {
    double y = 10 + plot_h - plot_h * i / 4;
    pf(f,
       "<line class=\"grid\" x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n"
       "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%g%s</text>\n",
       CHART_LEFT, y, CHART_W - 8, y, CHART_LEFT - 6, y + 4, max * i / 4,
       i == 4 ? unit : "");
  }
}

static void throughput(FILE *f, const cli_rec_view *v) {
  chart_open(f, "Throughput", "tasks finished per second over time");
  if (v->n_slots == 0) {
    pf(f, "<text x=\"%d\" y=\"%d\">no task finished</text>\n</svg></div>\n",
       CHART_LEFT, CHART_H / 2);
    return;
  }
  size_t per = (v->n_slots + MAX_BARS - 1) / MAX_BARS;
  size_t bars = (v->n_slots + per - 1) / per;
  double secs = (double)(per * v->slot_ns) / 1e9;
  double max = 0;
  for (size_t b = 0; b < bars; b++) {
    uint64_t n = 0;
    for (size_t i = b * per; i < (b + 1) * per && i < v->n_slots; i++)
      n += v->done[i];
    if ((double)n / secs > max)
      max = (double)n / secs;
  }
  max = nice_ceil(max);
  y_axis(f, max, "/s");
  double plot_h = CHART_H - CHART_BOTTOM - 10;
  double bw = (double)(CHART_W - 8 - CHART_LEFT) / (double)bars;
  for (size_t b = 0; b < bars; b++) {
    uint64_t n = 0, bad = 0;
    for (size_t i = b * per; i < (b + 1) * per && i < v->n_slots; i++) {
      n += v->done[i];
      bad += v->failed[i];
    }
    double x = CHART_LEFT + b * bw + bw * 0.1;
    double h_all = (double)n / secs / max * plot_h;
    double h_bad = (double)bad / secs / max * plot_h;
    double base = 10 + plot_h;
    char t0[32], t1[32];
    fmt_tick(b * per * v->slot_ns, per * v->slot_ns, t0, sizeof t0);
    fmt_tick((b + 1) * per * v->slot_ns, per * v->slot_ns, t1, sizeof t1);
    pf(f,
       "<rect class=\"s-ok\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
       "height=\"%.2f\"><title>%s-%s: %llu finished (%.1f/s), %llu "
       "failed</title></rect>\n",
       x, base - h_all, bw * 0.8, h_all - h_bad, t0, t1, (unsigned long long)n,
       (double)n / secs, (unsigned long long)bad);
    if (bad > 0)
      pf(f,
         "<rect class=\"s-failed\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
         "height=\"%.2f\"/>\n",
         x, base - h_bad, bw * 0.8, h_bad);
  }
  char b[32], c[32];
  uint64_t end = bars * per * v->slot_ns;
  pf(f,
     "<text x=\"%d\" y=\"%d\">0</text>\n<text x=\"%d\" y=\"%d\" "
     "text-anchor=\"end\">%s</text>\n<text x=\"%d\" y=\"%d\" "
     "text-anchor=\"middle\">time since start (bars of %s; failures in "
     "red)</text>\n</svg></div>\n",
     CHART_LEFT, CHART_H - 18, CHART_W - 8, CHART_H - 18,
     fmt_dur(end, b, sizeof b), (CHART_W + CHART_LEFT) / 2, CHART_H - 4,
     fmt_dur(per * v->slot_ns, c, sizeof c));
}

static void histogram(FILE *f, const cli_rec_view *v) {
  const ratchet_histogram *h = &v->total.run;
  chart_open(f, "Run time", "histogram of the tasks' run times");
  if (h->count == 0) {
    pf(f, "<text x=\"%d\" y=\"%d\">no task ran</text>\n</svg></div>\n",
       CHART_LEFT, CHART_H / 2);
    return;
  }
  unsigned lo = 0, hi = RATCHET_HIST_BUCKETS - 1;
  while (lo < hi && h->buckets[lo] == 0)
    lo++;
  while (hi > lo && h->buckets[hi] == 0)
    hi--;
  if (hi - lo < 5) /* a little context around a narrow distribution */
    hi = lo + 5 < RATCHET_HIST_BUCKETS ? lo + 5 : RATCHET_HIST_BUCKETS - 1;
  uint64_t peak = 0;
  for (unsigned i = lo; i <= hi; i++)
    if (h->buckets[i] > peak)
      peak = h->buckets[i];
  double max = nice_ceil((double)peak);
  y_axis(f, max, "");
  double plot_h = CHART_H - CHART_BOTTOM - 10;
  unsigned n = hi - lo + 1;
  double bw = (double)(CHART_W - 8 - CHART_LEFT) / n;
  char d[32];
  for (unsigned i = lo; i <= hi; i++) {
    double x = CHART_LEFT + (i - lo) * bw;
    double bh = (double)h->buckets[i] / max * plot_h;
    uint64_t bound = ratchet_histogram_bound_ns(i);
    const char *b =
        i < RATCHET_HIST_FINITE
            ? fmt_dur(bound, d, sizeof d)
            : fmt_dur(ratchet_histogram_bound_ns(i - 1), d, sizeof d);
    pf(f,
       "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
       "height=\"%.2f\"><title>%s %s: %llu tasks</title></rect>\n",
       x + bw * 0.08, 10 + plot_h - bh, bw * 0.84, bh,
       i < RATCHET_HIST_FINITE ? "&#8804;" : "&gt;", b,
       (unsigned long long)h->buckets[i]);
    if (n <= 12 || (i - lo) % 2 == 0)
      pf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%s%s</text>\n",
         x + bw / 2, CHART_H - 20, i < RATCHET_HIST_FINITE ? "" : "&gt;", b);
  }
  char p50[32], p90[32], p99[32];
  pf(f,
     "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">run time of the last "
     "attempt &#183; p50 %s &#183; p90 %s &#183; p99 %s</text>\n</svg></div>\n",
     (CHART_W + CHART_LEFT) / 2, CHART_H - 4,
     fmt_dur(ratchet_histogram_quantile(h, 0.5), p50, sizeof p50),
     fmt_dur(ratchet_histogram_quantile(h, 0.9), p90, sizeof p90),
     fmt_dur(ratchet_histogram_quantile(h, 0.99), p99, sizeof p99));
}

/* ---- the tables ------------------------------------------------------- */

static void kind_row(FILE *f, const cli_rec_kind *k, bool total) {
  uint64_t other = 0;
  for (unsigned s = 0; s < RATCHET_STATUS_COUNT; s++)
    if (s != RATCHET_STATUS_OK && s != RATCHET_STATUS_FAILED &&
        s != RATCHET_STATUS_TIMEOUT && s != RATCHET_STATUS_LOST &&
        s != RATCHET_STATUS_POISON)
      other += k->by_status[s];
  char p50[32], p99[32], mx[32];
  pf(f, "<tr><td>%s", total ? "<b>" : "<code>");
  esc(f, k->name);
  pf(f,
     "%s</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
     "<td class=\"n\">%llu</td><td class=\"n\">%llu</td><td class=\"n\">%llu"
     "</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
     "<td class=\"n\">%llu</td><td class=\"n\">%llu</td><td class=\"n\">%s"
     "</td><td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n",
     total ? "</b>" : "</code>", (unsigned long long)sum_status(k),
     (unsigned long long)k->by_status[RATCHET_STATUS_OK],
     (unsigned long long)k->by_status[RATCHET_STATUS_FAILED],
     (unsigned long long)k->by_status[RATCHET_STATUS_TIMEOUT],
     (unsigned long long)(k->by_status[RATCHET_STATUS_LOST] +
                          k->by_status[RATCHET_STATUS_POISON]),
     (unsigned long long)other, (unsigned long long)k->cached,
     (unsigned long long)k->attempts, (unsigned long long)k->retries,
     fmt_dur(ratchet_histogram_quantile(&k->run, 0.5), p50, sizeof p50),
     fmt_dur(ratchet_histogram_quantile(&k->run, 0.99), p99, sizeof p99),
     fmt_dur(k->run.max_ns, mx, sizeof mx));
}

static void kinds_table(FILE *f, const cli_rec_view *v) {
  pf(f, "<h2>By kind</h2>\n<table>\n<tr><th>kind</th><th class=\"n\">tasks"
        "</th><th class=\"n\">ok</th><th class=\"n\">failed</th>"
        "<th class=\"n\">timeout</th><th class=\"n\">lost / poison</th>"
        "<th class=\"n\">other</th><th class=\"n\">cached</th>"
        "<th class=\"n\">attempts</th><th class=\"n\">retries</th>"
        "<th class=\"n\">p50 run</th><th class=\"n\">p99 run</th>"
        "<th class=\"n\">max run</th></tr>\n");
  for (size_t i = 0; i < v->n_kinds; i++)
    kind_row(f, &v->kinds[i], false);
  if (v->n_kinds != 1)
    kind_row(f, &v->total, true);
  pf(f, "</table>\n");
}

static void status_badge(FILE *f, int status) {
  pf(f, "<span class=\"st %s\">%s</span>", st_class(status),
     status_name(status));
}

static void slowest_table(FILE *f, const cli_rec_view *v) {
  pf(f, "<h2>Slowest tasks</h2>\n");
  if (v->n_slowest == 0) {
    pf(f, "<p class=\"note\">No task ran.</p>\n");
    return;
  }
  pf(f, "<table>\n<tr><th class=\"n\">#</th><th>task</th><th>status</th>"
        "<th class=\"n\">attempts</th><th class=\"n\">run time</th></tr>\n");
  char d[32];
  for (size_t i = 0; i < v->n_slowest; i++) {
    const cli_rec_task *t = &v->slowest[i];
    pf(f, "<tr><td class=\"n\">%llu</td><td class=\"task\"><code>",
       (unsigned long long)t->seq);
    esc(f, t->label);
    pf(f, "</code></td><td>");
    status_badge(f, t->status);
    pf(f, "</td><td class=\"n\">%u</td><td class=\"n\">%s</td></tr>\n",
       t->attempts, fmt_dur(t->run_ns, d, sizeof d));
  }
  pf(f, "</table>\n");
}

static void failures_table(FILE *f, const cli_rec_view *v) {
  pf(f, "<h2>Failures</h2>\n");
  if (v->n_failures == 0) {
    pf(f, "<p class=\"note\">No task failed.</p>\n");
    return;
  }
  pf(f, "<table>\n<tr><th class=\"n\">#</th><th>task</th><th>status</th>"
        "<th class=\"n\">exit</th><th class=\"n\">attempts</th>"
        "<th>error and the last lines of stderr</th></tr>\n");
  for (size_t i = 0; i < v->n_failures; i++) {
    const cli_rec_task *t = &v->failures[i];
    pf(f, "<tr><td class=\"n\">%llu</td><td class=\"task\"><code>",
       (unsigned long long)t->seq);
    esc(f, t->label);
    pf(f, "</code></td><td>");
    status_badge(f, t->status);
    if (t->term_signal != 0)
      pf(f, "</td><td class=\"n\">signal %d", t->term_signal);
    else
      pf(f, "</td><td class=\"n\">%d", t->exit_code);
    pf(f, "</td><td class=\"n\">%u</td><td class=\"task\">", t->attempts);
    esc(f, t->error);
    if (t->tail[0] != '\0') {
      pf(f, "<pre class=\"tail\">");
      esc(f, t->tail);
      pf(f, "</pre>");
    }
    pf(f, "</td></tr>\n");
  }
  pf(f, "</table>\n");
  if (v->failures_dropped > 0)
    pf(f, "<p class=\"note\">%llu more failures are not listed.</p>\n",
       (unsigned long long)v->failures_dropped);
}

int cli_report_write(const cli_rec *r, const cli_report_info *info,
                     const char *path, cli_err *e) {
  cli_rec_view v;
  cli_rec_view_get(r, &v);
  size_t plen = strlen(path);
  char *tmp = ratchet_malloc(plen + 5);
  if (tmp == NULL) {
    cli_err_set(e, "--report: out of memory");
    return -ENOMEM;
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) {
    int err = errno;
    cli_err_set(e, "--report: cannot write '%s': %s", tmp, strerror(err));
    ratchet_free(tmp);
    return -err;
  }
  head(f, &v, info);
  cards(f, &v);
  timeline(f, &v);
  pf(f, "<div class=\"two\">\n");
  throughput(f, &v);
  histogram(f, &v);
  pf(f, "</div>\n");
  kinds_table(f, &v);
  slowest_table(f, &v);
  failures_table(f, &v);
  pf(f, "<footer>ratchet %s &middot; attempts on the timeline: %zu",
     RATCHET_CLI_VERSION, v.n_slices);
  if (v.instants_dropped > 0)
    pf(f, " &middot; %llu events not recorded",
       (unsigned long long)v.instants_dropped);
  pf(f, "</footer>\n</body>\n</html>\n");
  int err = ferror(f) ? (errno != 0 ? errno : EIO) : 0;
  if (fclose(f) != 0 && err == 0)
    err = errno != 0 ? errno : EIO;
  if (err == 0 && rename(tmp, path) != 0)
    err = errno;
  if (err != 0) {
    cli_err_set(e, "--report: cannot write '%s': %s", path, strerror(err));
    (void)remove(tmp);
  }
  ratchet_free(tmp);
  return -err;
}
