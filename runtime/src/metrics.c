/*
 * metrics.c - an orchestrator's numbers as Prometheus text exposition
 * (ratchet/metrics.h), and the atomic file write of the textfile collector.
 *
 * Two sources feed a render. The accounting snapshot (ratchet_orch_stats)
 * holds everything about tasks: it is taken afresh at each render, from
 * whichever thread renders, or is the last one taken by detach. What the
 * accounting does not keep - per-pool worker lifecycle counts and per-group
 * breaker states - an inline subscriber on the orchestrator's event bus
 * counts into small tables under a mutex; it allocates only when a pool or
 * a breaker group appears for the first time.
 *
 * The text is built in a growing buffer that remembers an allocation
 * failure instead of checking every append; families are written one after
 * another, each with its HELP and TYPE lines and all its samples together,
 * as the format requires. Numbers are integers or exact decimals: durations
 * are nanosecond integers printed as seconds with up to nine decimals,
 * never through floating point, so the le bounds read 0.000001 .. 2147.483648
 * exactly and sums lose nothing.
 */
#define _GNU_SOURCE /* mkostemp */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics_internal.h"
#include "ratchet/alloc.h"

/* A pool index beyond this is not a pool of ours: ignored. */
#define MAX_POOL_INDEX 65536

/* Lower-case state names for label values (ratchet_breaker_state_name
 * spells them in capitals). */
static const char *const state_names[RATCHET_BREAKER_STATE_COUNT] = {
    "closed", "open", "half_open", "disabled", "forced_open", "metrics_only"};

/* ------------------------------------------------------------ the buffer */

typedef struct mbuf {
  char *p;
  size_t len, cap;
  bool oom;
} mbuf;

static void mb_reserve(mbuf *b, size_t extra) {
  if (b->oom || b->len + extra + 1 <= b->cap)
    return;
  size_t cap = b->cap < 4096 ? 4096 : b->cap;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *p = ratchet_realloc(b->p, cap);
  if (p == NULL) {
    b->oom = true;
    return;
  }
  b->p = p;
  b->cap = cap;
}

static void mb_putn(mbuf *b, const char *s, size_t n) {
  mb_reserve(b, n);
  if (b->oom)
    return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void mb_puts(mbuf *b, const char *s) {
  mb_putn(b, s, strlen(s));
}

static void mb_u64(mbuf *b, uint64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
  mb_putn(b, tmp, (size_t)n);
}

/* ns as seconds: "0", "1.5", "0.000001", exact. */
static void mb_seconds(mbuf *b, uint64_t ns) {
  char tmp[40];
  int n = snprintf(tmp, sizeof tmp, "%llu.%09llu",
                   (unsigned long long)(ns / 1000000000u),
                   (unsigned long long)(ns % 1000000000u));
  while (tmp[n - 1] == '0')
    n--;
  if (tmp[n - 1] == '.')
    n--;
  mb_putn(b, tmp, (size_t)n);
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t need;
  unsigned min;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    need = 2;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 3;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (n < need)
    return 0;
  unsigned cp = c & (0x7fu >> need);
  for (size_t i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return need;
}

/* A label value or HELP text, escaped: backslash and newline always, the
 * double quote in label values; invalid UTF-8 becomes U+FFFD. */
static void mb_escaped(mbuf *b, const char *s, bool quote) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  while (n > 0) {
    size_t run = 0;
    /* Copy the longest run that needs nothing done in one append. */
    while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '\\' &&
           !(quote && p[run] == '"'))
      run++;
    mb_putn(b, (const char *)p, run);
    p += run;
    n -= run;
    if (n == 0)
      break;
    size_t l;
    if (*p == '\\') {
      mb_puts(b, "\\\\");
      l = 1;
    } else if (*p == '"' && quote) {
      mb_puts(b, "\\\"");
      l = 1;
    } else if (*p == '\n') {
      mb_puts(b, "\\n");
      l = 1;
    } else if ((l = utf8_len(p, n)) > 0) {
      mb_putn(b, (const char *)p, l);
    } else {
      mb_puts(b, "\xef\xbf\xbd");
      l = 1;
    }
    p += l;
    n -= l;
  }
}

/* ,name="value" (or name="value" first). */
static void mb_label(mbuf *b, bool first, const char *name, const char *v) {
  if (!first)
    mb_puts(b, ",");
  mb_puts(b, name);
  mb_puts(b, "=\"");
  mb_escaped(b, v, true);
  mb_puts(b, "\"");
}

static void family(mbuf *b, const char *name, const char *type,
                   const char *help) {
  mb_puts(b, "# HELP ");
  mb_puts(b, name);
  mb_puts(b, " ");
  mb_escaped(b, help, false);
  mb_puts(b, "\n# TYPE ");
  mb_puts(b, name);
  mb_puts(b, " ");
  mb_puts(b, type);
  mb_puts(b, "\n");
}

/* ------------------------------------------------------ the accounting */

/* The counters per kind that render as ratchet_<name> {kind}. */
static const struct {
  ratchet_counter c;
  const char *name;
  const char *help;
} kind_counters[] = {
    {RATCHET_COUNT_SUBMITTED, "ratchet_tasks_submitted_total",
     "Tasks accepted by submit."},
    {RATCHET_COUNT_ATTEMPTS, "ratchet_task_attempts_total",
     "Attempts dispatched to a worker."},
    {RATCHET_COUNT_RETRIES, "ratchet_task_retries_total",
     "Retries scheduled after a failed attempt."},
    {RATCHET_COUNT_LOST, "ratchet_task_attempts_lost_total",
     "Attempts lost with their worker (it died, hung or broke the "
     "protocol)."},
    {RATCHET_COUNT_CACHE_HITS, "ratchet_cache_hits_total",
     "Tasks served from the result cache."},
    {RATCHET_COUNT_CACHE_MISSES, "ratchet_cache_misses_total",
     "Result cache lookups that found nothing."},
    {RATCHET_COUNT_COALESCED, "ratchet_tasks_coalesced_total",
     "Tasks that joined an identical task and shared its outcome."},
    {RATCHET_COUNT_DEFERRED, "ratchet_tasks_deferred_total",
     "Times a task was held back by a rate limit or a waiting breaker."},
    {RATCHET_COUNT_DEAD_LETTERS, "ratchet_dead_letters_total",
     "Final failures sent to the dead letter."},
};

static void render_kind_counter(mbuf *b, const ratchet_stats *s, size_t i) {
  family(b, kind_counters[i].name, "counter", kind_counters[i].help);
  for (size_t k = 0; s != NULL && k < s->n_kinds; k++) {
    mb_puts(b, kind_counters[i].name);
    mb_puts(b, "{");
    mb_label(b, true, "kind", s->kinds[k].kind);
    mb_puts(b, "} ");
    mb_u64(b, s->kinds[k].counters[kind_counters[i].c]);
    mb_puts(b, "\n");
  }
}

static void render_completed(mbuf *b, const ratchet_stats *s) {
  const char *name = "ratchet_tasks_completed_total";
  family(b, name, "counter", "Tasks that reached their final outcome.");
  for (size_t k = 0; s != NULL && k < s->n_kinds; k++)
    for (int st = RATCHET_STATUS_OK; st < RATCHET_STATUS_COUNT; st++) {
      mb_puts(b, name);
      mb_puts(b, "{");
      mb_label(b, true, "kind", s->kinds[k].kind);
      mb_label(b, false, "status", ratchet_status_name((ratchet_status)st));
      mb_puts(b, "} ");
      mb_u64(b, s->kinds[k].by_status[st].count);
      mb_puts(b, "\n");
    }
}

static void gauge(mbuf *b, const char *name, const char *help, uint64_t v) {
  family(b, name, "gauge", help);
  mb_puts(b, name);
  mb_puts(b, " ");
  mb_u64(b, v);
  mb_puts(b, "\n");
}

/* One series of a histogram family: kind and status labels. */
static void histogram_series(mbuf *b, const char *name, const char *kind,
                             const char *status, const ratchet_histogram *h) {
  uint64_t cum = 0;
  for (unsigned i = 0; i < RATCHET_HIST_BUCKETS; i++) {
    cum += h->buckets[i];
    mb_puts(b, name);
    mb_puts(b, "_bucket{");
    mb_label(b, true, "kind", kind);
    mb_label(b, false, "status", status);
    mb_puts(b, ",le=\"");
    if (i < RATCHET_HIST_FINITE)
      mb_seconds(b, ratchet_histogram_bound_ns(i));
    else
      mb_puts(b, "+Inf");
    mb_puts(b, "\"} ");
    mb_u64(b, cum);
    mb_puts(b, "\n");
  }
  static const char *const tails[] = {"_sum{", "_count{"};
  for (int t = 0; t < 2; t++) {
    mb_puts(b, name);
    mb_puts(b, tails[t]);
    mb_label(b, true, "kind", kind);
    mb_label(b, false, "status", status);
    mb_puts(b, "} ");
    if (t == 0)
      mb_seconds(b, h->sum_ns);
    else
      mb_u64(b, cum);
    mb_puts(b, "\n");
  }
}

enum { H_QUEUE_WAIT, H_RUN, H_END_TO_END };

static void render_histogram(mbuf *b, const ratchet_stats *s, int which) {
  static const char *const names[] = {"ratchet_task_queue_wait_seconds",
                                      "ratchet_task_run_seconds",
                                      "ratchet_task_duration_seconds"};
  static const char *const helps[] = {
      "Time from submit to the first dispatch, of tasks that reached a "
      "worker, by final status.",
      "Time of the last attempt on its worker, of tasks that reached a "
      "worker, by final status.",
      "Time from submit to the final outcome, by final status."};
  family(b, names[which], "histogram", helps[which]);
  for (size_t k = 0; s != NULL && k < s->n_kinds; k++)
    for (int st = RATCHET_STATUS_OK; st < RATCHET_STATUS_COUNT; st++) {
      const ratchet_status_stats *ss = &s->kinds[k].by_status[st];
      const ratchet_histogram *h = which == H_QUEUE_WAIT ? &ss->queue_wait
                                   : which == H_RUN      ? &ss->run
                                                         : &ss->end_to_end;
      /* A series appears with its first value: a kind has a dozen
       * statuses, most of which never happen. */
      if (h->count == 0)
        continue;
      histogram_series(b, names[which], s->kinds[k].kind,
                       ratchet_status_name((ratchet_status)st), h);
    }
}

static void render_stats(mbuf *b, const ratchet_stats *s) {
  render_kind_counter(b, s, 0);
  render_completed(b, s);
  for (size_t i = 1; i < sizeof kind_counters / sizeof *kind_counters; i++)
    render_kind_counter(b, s, i);
  gauge(b, "ratchet_tasks_queued", "Tasks waiting for a worker.",
        s != NULL ? s->queued : 0);
  gauge(b, "ratchet_tasks_delayed",
        "Tasks waiting for a time: a delay, a retry's backoff, a rate limit.",
        s != NULL ? s->delayed : 0);
  gauge(b, "ratchet_tasks_in_flight", "Attempts running on a worker.",
        s != NULL ? s->in_flight : 0);
  gauge(b, "ratchet_workers_ready", "Workers ready for tasks.",
        s != NULL ? s->workers_ready : 0);
  render_histogram(b, s, H_QUEUE_WAIT);
  render_histogram(b, s, H_RUN);
  render_histogram(b, s, H_END_TO_END);
}

/* ------------------------------------------------------ the event tables */

static const struct {
  size_t offset;
  const char *name;
  const char *help;
} pool_counters[] = {
    {offsetof(ratchet__metrics_pool, starts), "ratchet_worker_starts_total",
     "Worker processes started (first starts and restarts)."},
    {offsetof(ratchet__metrics_pool, exits), "ratchet_worker_exits_total",
     "Worker processes that exited or were killed."},
    {offsetof(ratchet__metrics_pool, restarts), "ratchet_worker_restarts_total",
     "Worker restarts scheduled after an exit."},
    {offsetof(ratchet__metrics_pool, recycles), "ratchet_worker_recycles_total",
     "Workers retired after their task count or memory limit."},
    {offsetof(ratchet__metrics_pool, hangs), "ratchet_worker_hangs_total",
     "Workers declared hung (no Ready, Pong or Result in time) and killed."},
};

static void pool_label(mbuf *b, uint32_t p) {
  char idx[16];
  snprintf(idx, sizeof idx, "%u", (unsigned)p);
  mb_puts(b, "{");
  mb_label(b, true, "pool", idx);
  mb_puts(b, "} ");
}

/* Called with m->lock held. */
static void render_tables(mbuf *b, const ratchet_metrics *m) {
  for (size_t i = 0; i < sizeof pool_counters / sizeof *pool_counters; i++) {
    family(b, pool_counters[i].name, "counter", pool_counters[i].help);
    for (uint32_t p = 0; p < m->n_pools; p++) {
      const char *row = (const char *)&m->pools[p];
      uint64_t v;
      memcpy(&v, row + pool_counters[i].offset, sizeof v);
      mb_puts(b, pool_counters[i].name);
      pool_label(b, p);
      mb_u64(b, v);
      mb_puts(b, "\n");
    }
  }
  family(b, "ratchet_pool_failed", "gauge",
         "1 when the pool gave up because its workers kept dying, else 0.");
  for (uint32_t p = 0; p < m->n_pools; p++) {
    mb_puts(b, "ratchet_pool_failed");
    pool_label(b, p);
    mb_puts(b, m->pools[p].failed ? "1\n" : "0\n");
  }

  family(b, "ratchet_breaker_state", "gauge",
         "Circuit breaker state of a group: 1 for the current state, 0 for "
         "the others. A group appears once it has changed state.");
  for (size_t g = 0; g < m->n_groups; g++)
    for (int st = 0; st < RATCHET_BREAKER_STATE_COUNT; st++) {
      mb_puts(b, "ratchet_breaker_state{");
      mb_label(b, true, "group", m->groups[g].name);
      mb_label(b, false, "state", state_names[st]);
      mb_puts(b, m->groups[g].state == st ? "} 1\n" : "} 0\n");
    }
  family(b, "ratchet_breaker_transitions_total", "counter",
         "Circuit breaker state changes, by group and from and to state.");
  for (size_t g = 0; g < m->n_groups; g++)
    for (int from = 0; from < RATCHET_BREAKER_STATE_COUNT; from++)
      for (int to = 0; to < RATCHET_BREAKER_STATE_COUNT; to++) {
        uint64_t n = m->groups[g].transitions[from][to];
        if (n == 0)
          continue;
        mb_puts(b, "ratchet_breaker_transitions_total{");
        mb_label(b, true, "group", m->groups[g].name);
        mb_label(b, false, "from", state_names[from]);
        mb_label(b, false, "to", state_names[to]);
        mb_puts(b, "} ");
        mb_u64(b, n);
        mb_puts(b, "\n");
      }
  family(b, "ratchet_metrics_events_lost_total", "counter",
         "Worker and breaker events these metrics could not count (no memory "
         "for a new pool or group).");
  mb_puts(b, "ratchet_metrics_events_lost_total ");
  mb_u64(b, m->events_lost);
  mb_puts(b, "\n");
}

/* The pool row for index p (growing the table), or NULL. Lock held. */
static ratchet__metrics_pool *pool_row(ratchet_metrics *m, int32_t p) {
  if (p < 0 || p >= MAX_POOL_INDEX)
    return NULL;
  if ((uint32_t)p >= m->n_pools) {
    uint32_t n = (uint32_t)p + 1;
    ratchet__metrics_pool *np = ratchet_realloc(m->pools, n * sizeof *np);
    if (np == NULL)
      return NULL;
    memset(np + m->n_pools, 0, (n - m->n_pools) * sizeof *np);
    m->pools = np;
    m->n_pools = n;
  }
  return &m->pools[p];
}

/* The group row named name (adding it), or NULL. Lock held. */
static ratchet__metrics_group *group_row(ratchet_metrics *m, const char *name) {
  for (size_t i = 0; i < m->n_groups; i++)
    if (strcmp(m->groups[i].name, name) == 0)
      return &m->groups[i];
  if (m->n_groups == m->cap_groups) {
    size_t cap = m->cap_groups == 0 ? 4 : m->cap_groups * 2;
    ratchet__metrics_group *ng = ratchet_realloc(m->groups, cap * sizeof *ng);
    if (ng == NULL)
      return NULL;
    m->groups = ng;
    m->cap_groups = cap;
  }
  size_t len = strlen(name);
  char *copy = ratchet_malloc(len + 1);
  if (copy == NULL)
    return NULL;
  memcpy(copy, name, len + 1);
  ratchet__metrics_group *g = &m->groups[m->n_groups++];
  memset(g, 0, sizeof *g);
  g->name = copy;
  g->state = RATCHET_BREAKER_CLOSED;
  return g;
}

static void on_event(void *ctx, const ratchet_event *ev) {
  ratchet_metrics *m = ctx;
  pthread_mutex_lock(&m->lock);
  if (ev->type == RATCHET_EV_BREAKER) {
    ratchet__metrics_group *g = group_row(m, ev->group);
    if (g == NULL) {
      m->events_lost++;
    } else if (ev->to_state >= 0 &&
               ev->to_state < RATCHET_BREAKER_STATE_COUNT) {
      g->state = ev->to_state;
      if (ev->from_state >= 0 && ev->from_state < RATCHET_BREAKER_STATE_COUNT)
        g->transitions[ev->from_state][ev->to_state]++;
    }
  } else {
    ratchet__metrics_pool *p = pool_row(m, ev->pool);
    if (p == NULL) {
      m->events_lost++;
    } else {
      switch (ev->type) {
      case RATCHET_EV_WORKER_STARTING:
        p->starts++;
        break;
      case RATCHET_EV_WORKER_EXITED:
        p->exits++;
        break;
      case RATCHET_EV_WORKER_RESTARTING:
        p->restarts++;
        break;
      case RATCHET_EV_WORKER_RECYCLED:
        p->recycles++;
        break;
      case RATCHET_EV_WORKER_HUNG:
        p->hangs++;
        break;
      case RATCHET_EV_POOL_FAILED:
        p->failed = true;
        break;
      default:
        break;
      }
    }
  }
  pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------------ API */

int ratchet_metrics_new(ratchet_orch *o, ratchet_metrics **out) {
  if (o == NULL || out == NULL)
    return -EINVAL;
  ratchet_metrics *m = ratchet_calloc(1, sizeof *m);
  if (m == NULL)
    return -ENOMEM;
  int rc = -ENOMEM;
  if (pthread_mutex_init(&m->orch_lock, NULL) != 0)
    goto fail_alloc;
  if (pthread_mutex_init(&m->lock, NULL) != 0)
    goto fail_orch_lock;
  m->orch = o;
  /* Rows for the pools added so far, so that a pool whose workers have
   * not started yet reads 0 rather than nothing. */
  uint32_t n = 0;
  while (n < MAX_POOL_INDEX && ratchet_orch_pool(o, n) != NULL)
    n++;
  if (n > 0 && pool_row(m, (int32_t)n - 1) == NULL)
    goto fail_lock;
  ratchet_subscriber_options so = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  so.types = RATCHET_EV_BIT(RATCHET_EV_WORKER_STARTING) |
             RATCHET_EV_BIT(RATCHET_EV_WORKER_EXITED) |
             RATCHET_EV_BIT(RATCHET_EV_WORKER_RESTARTING) |
             RATCHET_EV_BIT(RATCHET_EV_WORKER_RECYCLED) |
             RATCHET_EV_BIT(RATCHET_EV_WORKER_HUNG) |
             RATCHET_EV_BIT(RATCHET_EV_POOL_FAILED) |
             RATCHET_EV_BIT(RATCHET_EV_BREAKER);
  so.cb = on_event;
  so.ctx = m;
  if ((rc = ratchet_events_subscribe(ratchet_orch_events(o), &so, &m->sub)) !=
      0)
    goto fail_lock;
  *out = m;
  return 0;

fail_lock:
  ratchet_free(m->pools);
  pthread_mutex_destroy(&m->lock);
fail_orch_lock:
  pthread_mutex_destroy(&m->orch_lock);
fail_alloc:
  ratchet_free(m);
  return rc;
}

int ratchet_metrics_detach(ratchet_metrics *m) {
  if (m == NULL)
    return 0;
  pthread_mutex_lock(&m->orch_lock);
  int rc = 0;
  if (m->orch != NULL) {
    ratchet_events_unsubscribe(ratchet_orch_events(m->orch), m->sub);
    m->sub = NULL;
    rc = ratchet_orch_stats(m->orch, &m->last);
    if (rc != 0)
      m->last = NULL;
    m->orch = NULL;
  }
  pthread_mutex_unlock(&m->orch_lock);
  return rc;
}

int ratchet_metrics_render(ratchet_metrics *m, char **out, size_t *len) {
  if (m == NULL || out == NULL)
    return -EINVAL;
  mbuf b = {NULL, 0, 0, false};
  mb_reserve(&b, 16384);

  pthread_mutex_lock(&m->orch_lock);
  ratchet_stats *fresh = NULL;
  const ratchet_stats *s = m->last;
  if (m->orch != NULL) {
    if (ratchet_orch_stats(m->orch, &fresh) != 0)
      b.oom = true;
    s = fresh;
  }
  render_stats(&b, s);
  pthread_mutex_unlock(&m->orch_lock);
  ratchet_stats_free(fresh);

  pthread_mutex_lock(&m->lock);
  render_tables(&b, m);
  pthread_mutex_unlock(&m->lock);

  if (b.oom) {
    ratchet_free(b.p);
    *out = NULL;
    return -ENOMEM;
  }
  *out = b.p;
  if (len != NULL)
    *len = b.len;
  return 0;
}

/* write(2) all of it, through EINTR and short writes. */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int ratchet_metrics_write_file(ratchet_metrics *m, const char *path) {
  if (m == NULL || path == NULL || *path == '\0')
    return -EINVAL;
  char *text = NULL, *tmp = NULL, *dir = NULL;
  size_t len = 0;
  int fd = -1, rc;
  if ((rc = ratchet_metrics_render(m, &text, &len)) != 0)
    return rc;

  /* "DIR/.BASE.XXXXXX": hidden, in the same directory (rename stays on
   * one file system), and not ending in .prom, so that the textfile
   * collector never reads a file being written. */
  const char *slash = strrchr(path, '/');
  size_t dlen = slash != NULL ? (size_t)(slash - path) : 0;
  const char *base = slash != NULL ? slash + 1 : path;
  size_t tlen = dlen + strlen(base) + 16;
  rc = -ENOMEM;
  if ((tmp = ratchet_malloc(tlen)) == NULL ||
      (dir = ratchet_malloc(dlen + 2)) == NULL)
    goto done;
  if (slash == NULL) {
    snprintf(tmp, tlen, ".%s.XXXXXX", base);
    snprintf(dir, dlen + 2, ".");
  } else {
    snprintf(tmp, tlen, "%.*s/.%s.XXXXXX", (int)dlen, path, base);
    /* "/x" lives in "/". */
    snprintf(dir, dlen + 2, "%.*s", dlen == 0 ? 1 : (int)dlen, path);
  }
  if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
    rc = -errno;
    goto done;
  }
  rc = 0;
  /* mkstemp makes 0600; node_exporter usually runs as another user. */
  if (fchmod(fd, 0644) != 0 || (rc = write_all(fd, text, len)) != 0 ||
      fsync(fd) != 0) {
    rc = rc != 0 ? rc : -errno;
    goto unlink;
  }
  if (close(fd) != 0) {
    fd = -1;
    rc = -errno;
    goto unlink;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    rc = -errno;
    goto unlink;
  }
  /* The rename itself is durable once the directory is synced. A
   * directory that cannot be opened or synced (some file systems refuse)
   * does not make the write fail: the file is in place. */
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  rc = 0;
  goto done;

unlink:
  if (fd >= 0)
    close(fd);
  fd = -1;
  (void)unlink(tmp);
done:
  ratchet_free(dir);
  ratchet_free(tmp);
  ratchet_free(text);
  return rc;
}

void ratchet_metrics_free(ratchet_metrics *m) {
  if (m == NULL)
    return;
  ratchet__metrics_http_stop(m);
  if (m->orch != NULL)
    ratchet_events_unsubscribe(ratchet_orch_events(m->orch), m->sub);
  ratchet_stats_free(m->last);
  for (size_t i = 0; i < m->n_groups; i++)
    ratchet_free(m->groups[i].name);
  ratchet_free(m->groups);
  ratchet_free(m->pools);
  pthread_mutex_destroy(&m->lock);
  pthread_mutex_destroy(&m->orch_lock);
  ratchet_free(m);
}
