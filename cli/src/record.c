/*
 * record.c - the in-memory record of a run (record.h).
 *
 * Attempts are paired by task id: DISPATCHED opens an entry in a small
 * open-addressing table (linear probing, backward-shift deletion, so no
 * tombstones pile up over a million tasks), SUCCEEDED / FAILED / LOST
 * close it into a slice, and the task's final result (cli_rec_done)
 * removes it after stamping the exact exit status on the last slice. An
 * attempt's exit status before the last one is known only from the
 * worker's error sentence ("exit status N", "killed by signal N"), the
 * form cmd_worker.c writes. Slices and instants go into arrays that grow
 * by doubling up to their caps; past a cap they are only counted, so the
 * trace and the report say how much they leave out. Counts, histograms
 * and throughput cover every task regardless.
 */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ratchet/alloc.h"
#include "ratchet/clock.h"

typedef struct open_attempt {
  bool used;
  bool running; /* dispatched and not yet ended */
  uint64_t task_id, seq;
  uint64_t start_ns;
  int32_t pool, worker;
  uint32_t attempt;
  size_t last_slice; /* SIZE_MAX: none kept */
  char name[CLI_REC_NAME_MAX];
} open_attempt;

#define MAX_POOLS 64

struct cli_rec {
  cli_rec_lookup_fn lookup;
  void *lookup_ctx;
  ratchet_subscription *sub;
  uint64_t t0_ns, start_wall_ms, end_ns, last_ns;
  bool finished;

  open_attempt *tab;
  size_t tab_cap, tab_n; /* cap: a power of two */

  cli_rec_slice *slices;
  size_t n_slices, cap_slices;
  uint64_t slices_dropped;
  cli_rec_instant *instants;
  size_t n_instants, cap_instants;
  uint64_t instants_dropped;

  cli_rec_kind kinds[CLI_REC_MAX_KINDS];
  size_t n_kinds;
  cli_rec_kind total;

  uint32_t *done, *failed; /* CLI_REC_MAX_SLOTS each, once one ends */
  size_t n_slots;
  uint64_t slot_ns;

  cli_rec_task slowest[CLI_REC_SLOWEST];
  size_t n_slowest;
  cli_rec_task *failures;
  size_t n_failures;
  uint64_t failures_dropped;

  int32_t n_pools;
  int32_t workers[MAX_POOLS];
};

/* ---- the table of outstanding attempts -------------------------------- */

static size_t slot_of(const cli_rec *r, uint64_t id) {
  uint64_t h = id * UINT64_C(0x9e3779b97f4a7c15);
  return (size_t)(h >> 17) & (r->tab_cap - 1);
}

static open_attempt *tab_find(cli_rec *r, uint64_t id) {
  if (r->tab_cap == 0)
    return NULL;
  for (size_t i = slot_of(r, id);; i = (i + 1) & (r->tab_cap - 1)) {
    if (!r->tab[i].used)
      return NULL;
    if (r->tab[i].task_id == id)
      return &r->tab[i];
  }
}

static int tab_grow(cli_rec *r) {
  size_t cap = r->tab_cap ? r->tab_cap * 2 : 64;
  open_attempt *old = r->tab;
  size_t old_cap = r->tab_cap;
  open_attempt *nt = ratchet_calloc(cap, sizeof *nt);
  if (nt == NULL)
    return -ENOMEM;
  r->tab = nt;
  r->tab_cap = cap;
  for (size_t i = 0; i < old_cap; i++) {
    if (!old[i].used)
      continue;
    size_t j = slot_of(r, old[i].task_id);
    while (nt[j].used)
      j = (j + 1) & (cap - 1);
    nt[j] = old[i];
  }
  ratchet_free(old);
  return 0;
}

/* The entry of id, created empty if absent; NULL without memory. */
static open_attempt *tab_get(cli_rec *r, uint64_t id) {
  open_attempt *a = tab_find(r, id);
  if (a != NULL)
    return a;
  if ((r->tab_n + 1) * 2 > r->tab_cap && tab_grow(r) != 0)
    return NULL;
  size_t i = slot_of(r, id);
  while (r->tab[i].used)
    i = (i + 1) & (r->tab_cap - 1);
  a = &r->tab[i];
  memset(a, 0, sizeof *a);
  a->used = true;
  a->task_id = id;
  a->pool = a->worker = -1;
  a->last_slice = SIZE_MAX;
  r->tab_n++;
  return a;
}

/* Removes an entry, shifting later members of its probe run back so that
 * lookups never stop early at the hole. */
static void tab_del(cli_rec *r, open_attempt *a) {
  size_t mask = r->tab_cap - 1;
  size_t hole = (size_t)(a - r->tab);
  r->tab[hole].used = false;
  r->tab_n--;
  for (size_t j = (hole + 1) & mask; r->tab[j].used; j = (j + 1) & mask) {
    size_t home = slot_of(r, r->tab[j].task_id);
    /* Move j into the hole unless its home lies cyclically in (hole, j]. */
    bool stays =
        hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (stays)
      continue;
    r->tab[hole] = r->tab[j];
    r->tab[j].used = false;
    hole = j;
  }
}

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rel(cli_rec *r, uint64_t t_ns) {
  uint64_t v = t_ns > r->t0_ns ? t_ns - r->t0_ns : 0;
  if (v > r->last_ns)
    r->last_ns = v;
  return v;
}

/* Copies s into a buffer of n bytes, cut on a UTF-8 character boundary
 * with "…" when it does not fit. */
static void copy_cut(char *dst, size_t n, const char *s) {
  size_t len = strlen(s);
  if (len < n) {
    memcpy(dst, s, len + 1);
    return;
  }
  size_t keep = n - 4; /* room for "…" (3 bytes) and the NUL */
  while (keep > 0 && ((unsigned char)s[keep] & 0xc0) == 0x80)
    keep--;
  memcpy(dst, s, keep);
  memcpy(dst + keep, "\xe2\x80\xa6", 4);
}

static void see_worker(cli_rec *r, int32_t pool, int32_t worker) {
  if (pool < 0 || pool >= MAX_POOLS || worker < 0)
    return;
  if (pool >= r->n_pools)
    r->n_pools = pool + 1;
  if (worker + 1 > r->workers[pool])
    r->workers[pool] = worker + 1;
}

static cli_rec_kind *kind_of(cli_rec *r, const char *name) {
  for (size_t i = 0; i < r->n_kinds; i++)
    if (strncmp(r->kinds[i].name, name, sizeof r->kinds[i].name - 1) == 0)
      return &r->kinds[i];
  if (r->n_kinds == CLI_REC_MAX_KINDS) /* the last one takes the rest */
    return &r->kinds[CLI_REC_MAX_KINDS - 1];
  cli_rec_kind *k = &r->kinds[r->n_kinds++];
  memset(k, 0, sizeof *k);
  copy_cut(k->name, sizeof k->name, name);
  return k;
}

/* The exit status or signal in a worker's error sentence. */
static void parse_exit(const char *msg, cli_rec_slice *s) {
  int n;
  if (sscanf(msg, "exit status %d", &n) == 1) {
    s->has_exit = true;
    s->exit_code = n;
  } else if (sscanf(msg, "killed by signal %d", &n) == 1) {
    s->has_exit = true;
    s->exit_code = -1;
    s->term_signal = n;
  }
}

static cli_rec_instant *add_instant(cli_rec *r, const ratchet_event *ev) {
  if (r->n_instants == CLI_REC_MAX_INSTANTS) {
    r->instants_dropped++;
    return NULL;
  }
  if (r->n_instants == r->cap_instants) {
    size_t cap = r->cap_instants ? r->cap_instants * 2 : 256;
    if (cap > CLI_REC_MAX_INSTANTS)
      cap = CLI_REC_MAX_INSTANTS;
    cli_rec_instant *n = ratchet_realloc(r->instants, cap * sizeof *n);
    if (n == NULL) {
      r->instants_dropped++;
      return NULL;
    }
    r->instants = n;
    r->cap_instants = cap;
  }
  cli_rec_instant *in = &r->instants[r->n_instants++];
  memset(in, 0, sizeof *in);
  in->type = ev->type;
  in->ts_ns = rel(r, ev->time_ns);
  in->task_id = ev->task_id;
  in->pool = ev->pool;
  in->worker = ev->worker;
  in->attempt = ev->attempt;
  in->status = ev->status;
  in->term_signal = ev->signal;
  in->delay_ns = ev->delay_ns;
  in->from_state = ev->from_state;
  in->to_state = ev->to_state;
  copy_cut(in->group, sizeof in->group, ev->group);
  copy_cut(in->message, sizeof in->message, ev->message);
  return in;
}

static void on_dispatched(cli_rec *r, const ratchet_event *ev) {
  open_attempt *a = tab_get(r, ev->task_id);
  if (a == NULL)
    return;
  a->running = true;
  a->start_ns = rel(r, ev->time_ns);
  a->pool = ev->pool;
  a->worker = ev->worker;
  a->attempt = ev->attempt;
  if (a->name[0] == '\0') {
    uint64_t seq = 0;
    const char *input = NULL;
    char name[256];
    if (r->lookup != NULL &&
        r->lookup(r->lookup_ctx, ev->task_id, &seq, &input) && seq != 0) {
      a->seq = seq;
      snprintf(name, sizeof name, "%s #%llu %s", ev->kind,
               (unsigned long long)seq, input != NULL ? input : "");
    } else {
      snprintf(name, sizeof name, "%s task %llu", ev->kind,
               (unsigned long long)ev->task_id);
    }
    copy_cut(a->name, sizeof a->name, name);
  }
  see_worker(r, ev->pool, ev->worker);
  cli_rec_kind *k = kind_of(r, ev->kind);
  k->attempts++;
  r->total.attempts++;
}

static void on_ended(cli_rec *r, const ratchet_event *ev) {
  open_attempt *a = tab_find(r, ev->task_id);
  if (a == NULL || !a->running)
    return;
  a->running = false;
  if (r->n_slices == CLI_REC_MAX_SLICES) {
    r->slices_dropped++;
    a->last_slice = SIZE_MAX;
    return;
  }
  if (r->n_slices == r->cap_slices) {
    size_t cap = r->cap_slices ? r->cap_slices * 2 : 256;
    if (cap > CLI_REC_MAX_SLICES)
      cap = CLI_REC_MAX_SLICES;
    cli_rec_slice *n = ratchet_realloc(r->slices, cap * sizeof *n);
    if (n == NULL) {
      r->slices_dropped++;
      a->last_slice = SIZE_MAX;
      return;
    }
    r->slices = n;
    r->cap_slices = cap;
  }
  cli_rec_slice *s = &r->slices[r->n_slices];
  memset(s, 0, sizeof *s);
  uint64_t end = rel(r, ev->time_ns);
  s->start_ns = a->start_ns;
  s->dur_ns = end > a->start_ns ? end - a->start_ns : 0;
  s->task_id = a->task_id;
  s->seq = a->seq;
  s->pool = a->pool;
  s->worker = a->worker;
  s->attempt = a->attempt;
  s->status =
      ev->type == RATCHET_EV_LOST ? (int)RATCHET_STATUS_LOST : ev->status;
  if (ev->type == RATCHET_EV_SUCCEEDED) {
    s->has_exit = true;
  } else if (ev->type == RATCHET_EV_FAILED) {
    parse_exit(ev->message, s);
  }
  memcpy(s->name, a->name, sizeof s->name);
  copy_cut(s->error, sizeof s->error, ev->message);
  a->last_slice = r->n_slices++;
}

void cli_rec_event(cli_rec *r, const ratchet_event *ev) {
  open_attempt *a;
  cli_rec_instant *in;
  switch (ev->type) {
  case RATCHET_EV_DISPATCHED:
    on_dispatched(r, ev);
    break;
  case RATCHET_EV_SUCCEEDED:
  case RATCHET_EV_FAILED:
    on_ended(r, ev);
    break;
  case RATCHET_EV_LOST:
    a = tab_find(r, ev->task_id);
    on_ended(r, ev);
    if ((in = add_instant(r, ev)) != NULL && a != NULL) {
      in->seq = a->seq;
      in->pool = a->pool;
      in->worker = a->worker;
    }
    break;
  case RATCHET_EV_RETRY:
    kind_of(r, ev->kind)->retries++;
    r->total.retries++;
    a = tab_find(r, ev->task_id);
    if ((in = add_instant(r, ev)) != NULL && a != NULL) {
      /* On the track of the attempt that failed. */
      in->seq = a->seq;
      in->pool = a->pool;
      in->worker = a->worker;
    }
    break;
  case RATCHET_EV_WORKER_STARTING:
  case RATCHET_EV_WORKER_READY:
    see_worker(r, ev->pool, ev->worker);
    break;
  case RATCHET_EV_WORKER_EXITED:
  case RATCHET_EV_WORKER_RESTARTING:
  case RATCHET_EV_WORKER_RECYCLED:
  case RATCHET_EV_WORKER_HUNG:
    see_worker(r, ev->pool, ev->worker);
    (void)add_instant(r, ev);
    break;
  case RATCHET_EV_POOL_FAILED:
  case RATCHET_EV_BREAKER:
    (void)add_instant(r, ev);
    break;
  default:
    break;
  }
}

static void on_event(void *ctx, const ratchet_event *ev) {
  cli_rec_event(ctx, ev);
}

/* ---- final results ---------------------------------------------------- */

/* The last CLI_REC_TAIL_LINES lines of a task's stderr (memory or spill
 * file), at most CLI_REC_TAIL_MAX - 1 bytes, without the final newline. */
static void stderr_tail(const ratchet_orch_result *res, char *out) {
  char buf[CLI_REC_TAIL_MAX];
  size_t n = 0;
  out[0] = '\0';
  if (res->stderr_path != NULL && res->stderr_path[0] != '\0') {
    int fd = open(res->stderr_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from =
        size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
    ssize_t got = size > 0 ? pread(fd, buf, sizeof buf - 1, from) : 0;
    close(fd);
    n = got > 0 ? (size_t)got : 0;
  } else if (res->stderr_data != NULL && res->stderr_len > 0) {
    n = res->stderr_len < sizeof buf - 1 ? res->stderr_len : sizeof buf - 1;
    memcpy(buf, (const char *)res->stderr_data + res->stderr_len - n, n);
  }
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  size_t start = n, lines = 0;
  while (start > 0) {
    if (buf[start - 1] == '\n' && ++lines == CLI_REC_TAIL_LINES)
      break;
    start--;
  }
  /* NUL bytes would cut the string short: show them as spaces. */
  for (size_t i = start; i < n; i++)
    out[i - start] = buf[i] == '\0' ? ' ' : buf[i];
  out[n - start] = '\0';
}

static void fill_task(cli_rec_task *t, uint64_t seq, const char *label,
                      const ratchet_orch_result *res) {
  memset(t, 0, sizeof *t);
  t->seq = seq;
  t->run_ns = res->run_ns;
  t->status = (int)res->status;
  t->exit_code = res->exit_code;
  t->term_signal = res->term_signal;
  t->attempts = res->attempts;
  copy_cut(t->label, sizeof t->label, label != NULL ? label : "");
  copy_cut(t->error, sizeof t->error, res->error != NULL ? res->error : "");
}

/* Counts a completion at t_ns in its time slot. When the run outgrows
 * the slots, neighbours are merged pairwise and the slot doubles, so the
 * throughput keeps its whole history in fixed memory. */
static int count_slot(cli_rec *r, uint64_t t_ns, bool failed) {
  if (r->done == NULL) {
    r->done = ratchet_calloc(CLI_REC_MAX_SLOTS, sizeof *r->done);
    r->failed = ratchet_calloc(CLI_REC_MAX_SLOTS, sizeof *r->failed);
    if (r->done == NULL || r->failed == NULL) {
      ratchet_free(r->done);
      ratchet_free(r->failed);
      r->done = r->failed = NULL;
      return -ENOMEM;
    }
  }
  uint64_t t = rel(r, t_ns);
  while (t / r->slot_ns >= CLI_REC_MAX_SLOTS) {
    for (size_t i = 0; i < CLI_REC_MAX_SLOTS / 2; i++) {
      r->done[i] = r->done[2 * i] + r->done[2 * i + 1];
      r->failed[i] = r->failed[2 * i] + r->failed[2 * i + 1];
    }
    memset(r->done + CLI_REC_MAX_SLOTS / 2, 0,
           CLI_REC_MAX_SLOTS / 2 * sizeof *r->done);
    memset(r->failed + CLI_REC_MAX_SLOTS / 2, 0,
           CLI_REC_MAX_SLOTS / 2 * sizeof *r->failed);
    r->n_slots = (r->n_slots + 1) / 2;
    r->slot_ns *= 2;
  }
  size_t i = (size_t)(t / r->slot_ns);
  if (i + 1 > r->n_slots)
    r->n_slots = i + 1;
  r->done[i]++;
  if (failed)
    r->failed[i]++;
  return 0;
}

void cli_rec_done(cli_rec *r, uint64_t seq, const char *label, bool launched,
                  const ratchet_orch_result *res) {
  open_attempt *a = tab_find(r, res->id);
  if (a != NULL) {
    if (a->last_slice != SIZE_MAX && a->last_slice < r->n_slices) {
      cli_rec_slice *s = &r->slices[a->last_slice];
      s->final = true;
      if (s->status != (int)RATCHET_STATUS_LOST) {
        s->has_exit = true;
        s->exit_code = res->exit_code;
        s->term_signal = res->term_signal;
      }
    }
    tab_del(r, a);
  }
  if (!launched)
    return;
  bool ok = res->status == RATCHET_STATUS_OK;
  unsigned st = (unsigned)res->status < RATCHET_STATUS_COUNT
                    ? (unsigned)res->status
                    : (unsigned)RATCHET_STATUS_FAILED;
  cli_rec_kind *k = kind_of(r, res->kind != NULL ? res->kind : "");
  k->by_status[st]++;
  r->total.by_status[st]++;
  if (res->cached) {
    k->cached++;
    r->total.cached++;
  }
  if (res->attempts > 0 && !res->cached) {
    ratchet_histogram_record(&k->run, res->run_ns);
    ratchet_histogram_record(&r->total.run, res->run_ns);
  }
  (void)count_slot(r, res->finished_ns ? res->finished_ns : ratchet_now_ns(),
                   !ok);

  if (res->attempts > 0 && !res->cached &&
      (r->n_slowest < CLI_REC_SLOWEST ||
       res->run_ns > r->slowest[r->n_slowest - 1].run_ns)) {
    size_t i =
        r->n_slowest < CLI_REC_SLOWEST ? r->n_slowest++ : CLI_REC_SLOWEST - 1;
    while (i > 0 && r->slowest[i - 1].run_ns < res->run_ns) {
      r->slowest[i] = r->slowest[i - 1];
      i--;
    }
    fill_task(&r->slowest[i], seq, label, res);
  }
  if (!ok) {
    if (r->n_failures == CLI_REC_MAX_FAILURES) {
      r->failures_dropped++;
      return;
    }
    if (r->failures == NULL) {
      r->failures = ratchet_calloc(CLI_REC_MAX_FAILURES, sizeof *r->failures);
      if (r->failures == NULL) {
        r->failures_dropped++;
        return;
      }
    }
    cli_rec_task *t = &r->failures[r->n_failures++];
    fill_task(t, seq, label, res);
    stderr_tail(res, t->tail);
  }
}

/* ---- life ------------------------------------------------------------- */

int cli_rec_new(cli_rec_lookup_fn lookup, void *ctx, cli_rec **out) {
  cli_rec *r = ratchet_calloc(1, sizeof *r);
  if (r == NULL)
    return -ENOMEM;
  r->lookup = lookup;
  r->lookup_ctx = ctx;
  r->t0_ns = ratchet_now_ns();
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  r->start_wall_ms =
      (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  r->slot_ns = 100 * UINT64_C(1000000);
  copy_cut(r->total.name, sizeof r->total.name, "(all)");
  *out = r;
  return 0;
}

int cli_rec_attach(cli_rec *r, ratchet_events *bus) {
  ratchet_subscriber_options so = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  so.types =
      RATCHET_EV_BIT(RATCHET_EV_DISPATCHED) |
      RATCHET_EV_BIT(RATCHET_EV_SUCCEEDED) | RATCHET_EV_BIT(RATCHET_EV_FAILED) |
      RATCHET_EV_BIT(RATCHET_EV_LOST) | RATCHET_EV_BIT(RATCHET_EV_RETRY) |
      /* Worker lifecycle and pool failures; not the (many) stderr lines. */
      (RATCHET_EV_WORKER_ALL & ~RATCHET_EV_BIT(RATCHET_EV_WORKER_STDERR)) |
      RATCHET_EV_BIT(RATCHET_EV_BREAKER);
  so.cb = on_event;
  so.ctx = r;
  return ratchet_events_subscribe(bus, &so, &r->sub);
}

void cli_rec_detach(cli_rec *r, ratchet_events *bus) {
  if (r == NULL || r->sub == NULL)
    return;
  ratchet_events_unsubscribe(bus, r->sub);
  r->sub = NULL;
}

void cli_rec_finish(cli_rec *r) {
  if (r == NULL)
    return;
  r->end_ns = rel(r, ratchet_now_ns());
  r->finished = true;
}

void cli_rec_free(cli_rec *r) {
  if (r == NULL)
    return;
  ratchet_free(r->tab);
  ratchet_free(r->slices);
  ratchet_free(r->instants);
  ratchet_free(r->done);
  ratchet_free(r->failed);
  ratchet_free(r->failures);
  ratchet_free(r);
}

void cli_rec_view_get(const cli_rec *r, cli_rec_view *v) {
  memset(v, 0, sizeof *v);
  v->start_wall_ms = r->start_wall_ms;
  v->end_ns = r->finished && r->end_ns > r->last_ns ? r->end_ns : r->last_ns;
  v->slices = r->slices;
  v->n_slices = r->n_slices;
  v->slices_dropped = r->slices_dropped;
  v->instants = r->instants;
  v->n_instants = r->n_instants;
  v->instants_dropped = r->instants_dropped;
  v->kinds = r->kinds;
  v->n_kinds = r->n_kinds;
  v->total = r->total;
  v->done = r->done;
  v->failed = r->failed;
  v->n_slots = r->n_slots;
  v->slot_ns = r->slot_ns;
  v->slowest = r->slowest;
  v->n_slowest = r->n_slowest;
  v->failures = r->failures;
  v->n_failures = r->n_failures;
  v->failures_dropped = r->failures_dropped;
  v->n_pools = r->n_pools;
  v->workers_per_pool = r->workers;
}
