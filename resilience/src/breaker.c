/*
 * breaker.c - the circuit breaker: a six-state machine fed by a sliding
 * window of call outcomes.
 *
 * Two tables hold the rules. `policy` says, per state, whether a request is
 * admitted, where an outcome is counted (the sliding window, the half-open
 * probe tally, or nowhere) and what entering the state does (clear the
 * window, start an open period, hand out permits...). `next_state` says where
 * each automatic event leads: a threshold reached (TRIP), all probes passed,
 * the open period over, the half-open wait over. Manual transitions go
 * straight to the entry actions of the target state.
 *
 * The window keeps running totals (calls, failed, slow) so a verdict costs
 * two integer multiplications. COUNT keeps one byte per call in a ring and
 * subtracts the outcome it overwrites. TIME keeps window_size buckets of
 * bucket_ns; the newest ("head") bucket's end time is cached so that a call
 * inside it needs no division, and moving forward clears the buckets that
 * were skipped, at most window_size of them however far the clock jumped. A
 * clock that stands still or goes backwards records into the head bucket.
 * CONSECUTIVE has no window, only the current run of failures.
 *
 * Thresholds are kept in millionths of a percent, so "rate >= threshold" is
 * part * 10^8 >= threshold * calls in 64-bit integers: exact for thresholds
 * given with up to six decimals, and exactly "all of them" at 100 %.
 *
 * Time-driven changes (OPEN to HALF_OPEN, HALF_OPEN back to OPEN after the
 * maximum wait) happen lazily: every entry point that takes now_ns first
 * brings the state up to now_ns, and the change is dated now_ns. Everything
 * happens under one spin lock; state changes are collected inside it (at most
 * two per call: one time-driven, then one caused by the call) and reported to
 * the listener in order after it is released.
 */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ratchet/alloc.h"
#include "ratchet/breaker.h"
#include "ratchet/error.h"
#include "spin.h"

/* Short names for the states, for the tables below. */
enum {
  CLOSED = RATCHET_BREAKER_CLOSED,
  OPEN = RATCHET_BREAKER_OPEN,
  HALF_OPEN = RATCHET_BREAKER_HALF_OPEN,
  DISABLED = RATCHET_BREAKER_DISABLED,
  FORCED_OPEN = RATCHET_BREAKER_FORCED_OPEN,
  METRICS_ONLY = RATCHET_BREAKER_METRICS_ONLY
};

/* Automatic events. */
enum {
  EV_TRIP,          /* the window or the probes reached a threshold */
  EV_PROBES_PASSED, /* every half-open probe reported, all under thresholds */
  EV_OPEN_ELAPSED,  /* the open period is over */
  EV_WAIT_ELAPSED,  /* max_wait_in_half_open_ns passed without a decision */
  EV_COUNT
};

/* clang-format off */
static const uint8_t next_state[RATCHET_BREAKER_STATE_COUNT][EV_COUNT] = {
  /*               TRIP          PROBES_PASSED OPEN_ELAPSED  WAIT_ELAPSED */
  [CLOSED]       = {OPEN,         CLOSED,       CLOSED,       CLOSED},
  [OPEN]         = {OPEN,         OPEN,         HALF_OPEN,    OPEN},
  [HALF_OPEN]    = {OPEN,         CLOSED,       HALF_OPEN,    OPEN},
  /* The manual states never change by themselves. */
  [DISABLED]     = {DISABLED,     DISABLED,     DISABLED,     DISABLED},
  [FORCED_OPEN]  = {FORCED_OPEN,  FORCED_OPEN,  FORCED_OPEN,  FORCED_OPEN},
  [METRICS_ONLY] = {METRICS_ONLY, METRICS_ONLY, METRICS_ONLY, METRICS_ONLY},
};
/* clang-format on */

/* What a state does with a request, */
enum { ADMIT_ALL, ADMIT_NONE, ADMIT_PERMIT };
/* where it counts an outcome, */
enum { TO_NOWHERE, TO_WINDOW, TO_PROBES };
/* and what entering it does. */
enum {
  CLEAR_WINDOW = 1, /* empty window, no run of failures */
  CLEAR_TRIPS = 2,  /* the back-off starts again */
  START_PERIOD = 4, /* a trip: count it, and refuse calls for a while */
  GIVE_PERMITS = 8  /* fresh probe permits and tally, wait clock started */
};

/* clang-format off */
static const struct {
  uint8_t admit, outcomes, entry;
} policy[RATCHET_BREAKER_STATE_COUNT] = {
  /*               requests      outcomes    on entry */
  [CLOSED]       = {ADMIT_ALL,    TO_WINDOW,  CLEAR_WINDOW | CLEAR_TRIPS},
  [OPEN]         = {ADMIT_NONE,   TO_NOWHERE, START_PERIOD},
  [HALF_OPEN]    = {ADMIT_PERMIT, TO_PROBES,  GIVE_PERMITS},
  [DISABLED]     = {ADMIT_ALL,    TO_NOWHERE, 0},
  [FORCED_OPEN]  = {ADMIT_NONE,   TO_NOWHERE, 0},
  [METRICS_ONLY] = {ADMIT_ALL,    TO_WINDOW,  CLEAR_WINDOW},
};
/* clang-format on */

/* Thresholds are stored in millionths of a percent. */
#define PCT_SCALE UINT64_C(1000000)
#define PCT_FULL  (100 * PCT_SCALE)

/* One byte per call in a COUNT ring. A zero byte is an empty slot. */
#define SLOT_USED   1u
#define SLOT_FAILED 2u
#define SLOT_SLOW   4u

/* Outcome tallies: of the window, of the half-open probes, or a copy of one
 * of those kept for the metrics of a state that counts nothing. Rates are
 * shown only once calls >= minimum. */
struct counts {
  uint64_t calls, failed, slow;
  uint64_t minimum;
};

struct bucket {
  uint64_t calls, failed, slow;
};

/* State changes made under the lock, reported after it. */
struct changes {
  int n;
  struct {
    ratchet_breaker_state from, to;
  } c[2];
};

struct ratchet_breaker {
  ratchet__spin lock;
  ratchet_breaker_state state;

  /* The options, copied, and the thresholds scaled for integer checks. */
  ratchet_breaker_options o;
  uint64_t failure_thr, slow_thr;

  /* The sliding window (CLOSED, METRICS_ONLY). */
  struct counts win;
  uint8_t *ring; /* COUNT: window_size slots, next one at ring_pos */
  uint32_t ring_pos;
  struct bucket *buckets; /* TIME: window_size buckets, newest at head */
  uint32_t head;
  uint64_t head_epoch;  /* now_ns / bucket_ns of the head bucket */
  uint64_t head_end_ns; /* when it ends (saturated at UINT64_MAX) */
  uint32_t run;         /* current run of failures */

  /* HALF_OPEN. */
  struct counts probes;
  uint32_t permits_left;
  uint64_t half_open_since_ns;

  /* OPEN. */
  uint32_t trips; /* since the breaker last closed */
  uint64_t open_until_ns;

  /* The counts shown in states that count nothing: those the breaker had
   * when it left the last state that counted (the ones that tripped it). */
  struct counts frozen;

  uint64_t total_successes, total_failures, total_not_permitted,
      total_transitions;
};

static uint64_t add_sat(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The run of failures after one more outcome. */
static uint32_t next_run(uint32_t run, bool failed) {
  return failed ? (run < UINT32_MAX ? run + 1 : run) : 0;
}

/* True when part / calls * 100 >= thr (millionths of a percent), that is
 * part * 10^8 >= thr * calls. Both products fit in 64 bits while calls does
 * (thr <= 10^8, part <= calls); a TIME window of more than 1.8e11 calls falls
 * back to doubles, which are then more than precise enough. */
static bool rate_reached(uint64_t part, uint64_t calls, uint64_t thr) {
  if (calls <= UINT64_MAX / PCT_FULL)
    return part * PCT_FULL >= thr * calls;
  return (double)part * (double)PCT_FULL >= (double)thr * (double)calls;
}

/* A threshold in (0, 100] percent, in millionths of a percent, rounded to
 * nearest but at least 1, so that a tiny threshold still needs a failure. */
static uint64_t scale_pct(double pct) {
  uint64_t v = (uint64_t)(pct * (double)PCT_SCALE + 0.5);
  return v != 0 ? v : 1;
}

/*
 * open_duration_ns * multiplier^(trips - 1), capped at max_open_duration_ns.
 * The power is taken by squaring (no libm, at most 64 steps) and stops as
 * soon as the factor reaches cap / base, so it never overflows, whatever
 * the trip count.
 */
static uint64_t open_duration(const ratchet_breaker *b) {
  uint64_t base = b->o.open_duration_ns, cap = b->o.max_open_duration_ns;
  double m = b->o.open_backoff_multiplier;
  if (b->trips <= 1 || !(m > 1.0))
    return base;
  double limit = (double)cap / (double)base, factor = 1.0, x = m;
  for (uint32_t n = b->trips - 1;;) {
    if (n & 1u) {
      factor *= x;
      if (factor >= limit)
        return cap;
    }
    n >>= 1;
    if (n == 0)
      break;
    x *= x;
    /* Some later power (at least x) is still to be multiplied in. */
    if (x >= limit)
      return cap;
  }
  double d = (double)base * factor;
  return d >= (double)cap ? cap : (uint64_t)d;
}

/* TIME: make the bucket of now_ns the head, clearing the buckets between.
 * Returns at once while now_ns is inside the head bucket, or before it (a
 * clock that went backwards counts into the newest bucket). */
static void time_roll(ratchet_breaker *b, uint64_t now_ns) {
  if (now_ns < b->head_end_ns)
    return;
  uint64_t epoch = now_ns / b->o.bucket_ns;
  if (epoch <= b->head_epoch)
    return; /* only when head_end_ns saturated at the end of time */
  uint32_t size = b->o.window_size;
  uint64_t skip = epoch - b->head_epoch;
  if (skip >= size) {
    /* Every bucket is older than the window: empty them all at once. */
    if (b->win.calls != 0)
      memset(b->buckets, 0, (size_t)size * sizeof *b->buckets);
    b->win.calls = b->win.failed = b->win.slow = 0;
  } else {
    for (uint32_t i = 0; i < (uint32_t)skip; i++) {
      b->head = b->head + 1 == size ? 0 : b->head + 1;
      struct bucket *old = &b->buckets[b->head];
      b->win.calls -= old->calls;
      b->win.failed -= old->failed;
      b->win.slow -= old->slow;
      old->calls = old->failed = old->slow = 0;
    }
  }
  b->head_epoch = epoch;
  b->head_end_ns = add_sat(epoch * b->o.bucket_ns, b->o.bucket_ns);
}

/* Empties the window and the run of failures; a TIME window restarts at the
 * bucket of now_ns. The storage is all zero exactly when the window holds no
 * call, so an idle window costs nothing to clear. */
static void window_clear(ratchet_breaker *b, uint64_t now_ns) {
  if (b->win.calls != 0) {
    if (b->ring != NULL)
      memset(b->ring, 0, b->o.window_size);
    if (b->buckets != NULL)
      memset(b->buckets, 0, (size_t)b->o.window_size * sizeof *b->buckets);
  }
  b->win.calls = b->win.failed = b->win.slow = 0;
  b->ring_pos = 0;
  if (b->o.window == RATCHET_BREAKER_WINDOW_TIME) {
    b->head = 0;
    b->head_epoch = now_ns / b->o.bucket_ns;
    b->head_end_ns = add_sat(b->head_epoch * b->o.bucket_ns, b->o.bucket_ns);
  }
  b->run = 0;
}

/* Moves to `to` and runs its entry actions. */
static void enter(ratchet_breaker *b, ratchet_breaker_state to, uint64_t now_ns,
                  struct changes *ch) {
  ratchet_breaker_state from = b->state;

  /* Keep the counts of the state being left, so that an OPEN breaker still
   * shows the rates that tripped it. */
  if (policy[from].outcomes == TO_WINDOW) {
    if (b->o.window == RATCHET_BREAKER_WINDOW_TIME)
      time_roll(b, now_ns);
    b->frozen = b->win;
  } else if (policy[from].outcomes == TO_PROBES) {
    b->frozen = b->probes;
  }

  unsigned entry = policy[to].entry;
  if (entry & CLEAR_WINDOW)
    window_clear(b, now_ns);
  if (entry & CLEAR_TRIPS)
    b->trips = 0;
  if (entry & START_PERIOD) {
    if (b->trips < UINT32_MAX)
      b->trips++;
    b->open_until_ns = add_sat(now_ns, open_duration(b));
  }
  if (entry & GIVE_PERMITS) {
    b->permits_left = b->o.permitted_calls_in_half_open;
    b->probes.calls = b->probes.failed = b->probes.slow = 0;
    b->half_open_since_ns = now_ns;
    b->run = 0;
  }

  b->state = to;
  b->total_transitions++;
  /* One time-driven change and one caused by the call, at most. */
  assert(ch->n < 2);
  if (ch->n < 2) {
    ch->c[ch->n].from = from;
    ch->c[ch->n].to = to;
    ch->n++;
  }
}

static void fire(ratchet_breaker *b, int ev, uint64_t now_ns,
                 struct changes *ch) {
  ratchet_breaker_state to = (ratchet_breaker_state)next_state[b->state][ev];
  if (to != b->state)
    enter(b, to, now_ns, ch);
}

/* Brings the state up to now_ns. A period that ends is followed by a new one
 * that starts at now_ns, so this makes at most one change. */
static void apply_time(ratchet_breaker *b, uint64_t now_ns,
                       struct changes *ch) {
  if (b->state == RATCHET_BREAKER_OPEN) {
    if (now_ns >= b->open_until_ns)
      fire(b, EV_OPEN_ELAPSED, now_ns, ch);
  } else if (b->state == RATCHET_BREAKER_HALF_OPEN) {
    uint64_t wait = b->o.max_wait_in_half_open_ns;
    /* A clock behind the start of the wait has not waited at all. */
    if (wait != 0 && now_ns >= b->half_open_since_ns &&
        now_ns - b->half_open_since_ns >= wait)
      fire(b, EV_WAIT_ELAPSED, now_ns, ch);
  }
}

static void notify(ratchet_breaker *b, const struct changes *ch,
                   uint64_t now_ns) {
  if (b->o.listener == NULL)
    return;
  for (int i = 0; i < ch->n; i++)
    b->o.listener(b->o.listener_ctx, b, ch->c[i].from, ch->c[i].to, now_ns);
}

static void window_record(ratchet_breaker *b, bool failed, bool slow,
                          uint64_t now_ns, struct changes *ch) {
  b->run = next_run(b->run, failed);

  switch (b->o.window) {
  case RATCHET_BREAKER_WINDOW_COUNT: {
    unsigned old = b->ring[b->ring_pos];
    unsigned cur =
        SLOT_USED | (failed ? SLOT_FAILED : 0u) | (slow ? SLOT_SLOW : 0u);
    b->ring[b->ring_pos] = (uint8_t)cur;
    b->ring_pos = b->ring_pos + 1 == b->o.window_size ? 0 : b->ring_pos + 1;
    /* Branch-free: an empty slot subtracts nothing. */
    b->win.calls = b->win.calls - (old & SLOT_USED) + 1;
    b->win.failed = b->win.failed - ((old & SLOT_FAILED) != 0) + failed;
    b->win.slow = b->win.slow - ((old & SLOT_SLOW) != 0) + slow;
    break;
  }
  case RATCHET_BREAKER_WINDOW_TIME: {
    time_roll(b, now_ns);
    struct bucket *h = &b->buckets[b->head];
    h->calls++;
    h->failed += failed;
    h->slow += slow;
    b->win.calls++;
    b->win.failed += failed;
    b->win.slow += slow;
    break;
  }
  default: /* CONSECUTIVE */
    if (b->run >= b->o.consecutive_failures)
      fire(b, EV_TRIP, now_ns, ch);
    return;
  }

  if (b->win.calls >= b->win.minimum &&
      (rate_reached(b->win.failed, b->win.calls, b->failure_thr) ||
       rate_reached(b->win.slow, b->win.calls, b->slow_thr)))
    fire(b, EV_TRIP, now_ns, ch);
}

static void probe_record(ratchet_breaker *b, ratchet_breaker_outcome outcome,
                         bool slow, uint64_t now_ns, struct changes *ch) {
  uint32_t permitted = b->o.permitted_calls_in_half_open;
  if (outcome == RATCHET_BREAKER_IGNORED) {
    /* Give the permit back, unless every permit is already accounted for
     * (a call let through while CLOSED may report here). */
    if (b->permits_left + b->probes.calls < permitted)
      b->permits_left++;
    return;
  }
  bool failed = outcome == RATCHET_BREAKER_FAILURE;
  b->run = next_run(b->run, failed);
  b->probes.calls++;
  b->probes.failed += failed;
  b->probes.slow += slow;

  /* The verdict is over `permitted` results, so reopen as soon as the
   * results so far reach a threshold against that total: more results can
   * only add to them. Close only when all are in. */
  bool trip;
  if (b->o.window == RATCHET_BREAKER_WINDOW_CONSECUTIVE)
    trip = b->probes.failed != 0;
  else
    trip = rate_reached(b->probes.failed, permitted, b->failure_thr) ||
           rate_reached(b->probes.slow, permitted, b->slow_thr);
  if (trip)
    fire(b, EV_TRIP, now_ns, ch);
  else if (b->probes.calls >= permitted)
    fire(b, EV_PROBES_PASSED, now_ns, ch);
}

static bool options_valid(const ratchet_breaker_options *o) {
  switch (o->window) {
  case RATCHET_BREAKER_WINDOW_COUNT:
    if (o->window_size < 1 || o->window_size > 1000000 ||
        o->minimum_calls < 1 || o->minimum_calls > o->window_size)
      return false;
    break;
  case RATCHET_BREAKER_WINDOW_TIME:
    if (o->window_size < 1 || o->window_size > 3600 ||
        o->bucket_ns < UINT64_C(1000000) ||
        o->bucket_ns > UINT64_C(3600000000000) || o->minimum_calls < 1)
      return false;
    break;
  case RATCHET_BREAKER_WINDOW_CONSECUTIVE:
    if (o->consecutive_failures < 1 || o->consecutive_failures > 1000000)
      return false;
    break;
  default:
    return false;
  }
  /* Written so that NaN fails every check. */
  return o->failure_rate_threshold > 0.0 &&
         o->failure_rate_threshold <= 100.0 &&
         o->slow_call_rate_threshold > 0.0 &&
         o->slow_call_rate_threshold <= 100.0 &&
         o->slow_call_duration_ns >= 1 &&
         o->open_duration_ns >= UINT64_C(1000000) &&
         o->open_duration_ns <= o->max_open_duration_ns &&
         o->open_backoff_multiplier >= 1.0 &&
         o->open_backoff_multiplier <= 100.0 &&
         o->permitted_calls_in_half_open >= 1 &&
         o->permitted_calls_in_half_open <= 100000 &&
         (o->max_wait_in_half_open_ns == 0 ||
          o->max_wait_in_half_open_ns >= UINT64_C(1000000));
}

int ratchet_breaker_new(const ratchet_breaker_options *o, uint64_t now_ns,
                        ratchet_breaker **out) {
  if (o == NULL || out == NULL || !options_valid(o))
    return -EINVAL;

  ratchet_breaker *b = ratchet_calloc(1, sizeof *b);
  if (b == NULL)
    goto fail;
  if (o->window == RATCHET_BREAKER_WINDOW_COUNT) {
    b->ring = ratchet_calloc(o->window_size, 1);
    if (b->ring == NULL)
      goto fail;
  } else if (o->window == RATCHET_BREAKER_WINDOW_TIME) {
    b->buckets = ratchet_calloc(o->window_size, sizeof *b->buckets);
    if (b->buckets == NULL)
      goto fail;
  }

  ratchet__spin_init(&b->lock);
  b->o = *o;
  b->state = RATCHET_BREAKER_CLOSED;
  b->failure_thr = scale_pct(o->failure_rate_threshold);
  b->slow_thr = scale_pct(o->slow_call_rate_threshold);
  /* CONSECUTIVE has no window: its counts stay 0 and show no rate. */
  b->win.minimum =
      o->window == RATCHET_BREAKER_WINDOW_CONSECUTIVE ? 1 : o->minimum_calls;
  b->probes.minimum = o->permitted_calls_in_half_open;
  b->frozen.minimum = b->win.minimum;
  window_clear(b, now_ns);
  *out = b;
  return 0;

fail:
  ratchet_breaker_free(b);
  return -ENOMEM;
}

void ratchet_breaker_free(ratchet_breaker *b) {
  if (b == NULL)
    return;
  ratchet_free(b->ring);
  ratchet_free(b->buckets);
  ratchet_free(b);
}

int ratchet_breaker_allow(ratchet_breaker *b, uint64_t now_ns) {
  struct changes ch;
  ch.n = 0;
  int rc = 0;

  ratchet__spin_lock(&b->lock);
  apply_time(b, now_ns, &ch);
  unsigned admit = policy[b->state].admit;
  if (admit == ADMIT_PERMIT && b->permits_left > 0)
    b->permits_left--;
  else if (admit != ADMIT_ALL) {
    b->total_not_permitted++;
    rc = RATCHET_EBREAKER_OPEN;
  }
  ratchet__spin_unlock(&b->lock);

  if (ch.n != 0)
    notify(b, &ch, now_ns);
  return rc;
}

void ratchet_breaker_record(ratchet_breaker *b, ratchet_breaker_outcome outcome,
                            uint64_t duration_ns, uint64_t now_ns) {
  /* An outcome outside the enum says nothing about the callee. */
  if ((unsigned)outcome > RATCHET_BREAKER_IGNORED)
    return;
  bool failed = outcome == RATCHET_BREAKER_FAILURE;
  bool slow = duration_ns >= b->o.slow_call_duration_ns;
  struct changes ch;
  ch.n = 0;

  ratchet__spin_lock(&b->lock);
  apply_time(b, now_ns, &ch);
  if (outcome != RATCHET_BREAKER_IGNORED) {
    if (failed)
      b->total_failures++;
    else
      b->total_successes++;
  }
  switch (policy[b->state].outcomes) {
  case TO_WINDOW:
    if (outcome != RATCHET_BREAKER_IGNORED)
      window_record(b, failed, slow, now_ns, &ch);
    break;
  case TO_PROBES:
    probe_record(b, outcome, slow, now_ns, &ch);
    break;
  default:
    break;
  }
  ratchet__spin_unlock(&b->lock);

  if (ch.n != 0)
    notify(b, &ch, now_ns);
}

ratchet_breaker_state ratchet_breaker_state_at(ratchet_breaker *b,
                                               uint64_t now_ns) {
  struct changes ch;
  ch.n = 0;
  ratchet__spin_lock(&b->lock);
  apply_time(b, now_ns, &ch);
  ratchet_breaker_state s = b->state;
  ratchet__spin_unlock(&b->lock);
  if (ch.n != 0)
    notify(b, &ch, now_ns);
  return s;
}

int ratchet_breaker_transition(ratchet_breaker *b, ratchet_breaker_state to,
                               uint64_t now_ns) {
  if ((unsigned)to >= RATCHET_BREAKER_STATE_COUNT)
    return -EINVAL;
  struct changes ch;
  ch.n = 0;
  ratchet__spin_lock(&b->lock);
  /* "The current state" is the state at now_ns, as state_at would say: an
   * OPEN breaker whose period is over is HALF_OPEN, and asking for OPEN
   * starts a new period rather than doing nothing. */
  apply_time(b, now_ns, &ch);
  if (to != b->state)
    enter(b, to, now_ns, &ch);
  ratchet__spin_unlock(&b->lock);
  if (ch.n != 0)
    notify(b, &ch, now_ns);
  return 0;
}

void ratchet_breaker_reset(ratchet_breaker *b, uint64_t now_ns) {
  struct changes ch;
  ch.n = 0;
  ratchet__spin_lock(&b->lock);
  apply_time(b, now_ns, &ch);
  if (b->state != RATCHET_BREAKER_CLOSED)
    enter(b, RATCHET_BREAKER_CLOSED, now_ns, &ch);
  else
    window_clear(b, now_ns);
  b->trips = 0;
  b->open_until_ns = 0;
  b->frozen.calls = b->frozen.failed = b->frozen.slow = 0;
  ratchet__spin_unlock(&b->lock);
  if (ch.n != 0)
    notify(b, &ch, now_ns);
}

static uint32_t clamp32(uint64_t v) {
  return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static double rate(const struct counts *c, uint64_t part) {
  if (c->calls == 0 || c->calls < c->minimum)
    return -1.0;
  return (double)part * 100.0 / (double)c->calls;
}

void ratchet_breaker_metrics_get(ratchet_breaker *b, uint64_t now_ns,
                                 ratchet_breaker_metrics *m) {
  struct changes ch;
  ch.n = 0;
  ratchet__spin_lock(&b->lock);
  apply_time(b, now_ns, &ch);

  const struct counts *c = &b->frozen;
  if (policy[b->state].outcomes == TO_WINDOW) {
    if (b->o.window == RATCHET_BREAKER_WINDOW_TIME)
      time_roll(b, now_ns);
    c = &b->win;
  } else if (policy[b->state].outcomes == TO_PROBES) {
    c = &b->probes;
  }
  m->state = b->state;
  m->calls = clamp32(c->calls);
  m->failed_calls = clamp32(c->failed);
  m->slow_calls = clamp32(c->slow);
  m->failure_rate = rate(c, c->failed);
  m->slow_call_rate = rate(c, c->slow);
  m->consecutive_failures = b->run;
  m->half_open_permits_left =
      b->state == RATCHET_BREAKER_HALF_OPEN ? b->permits_left : 0;
  m->trips = b->trips;
  m->open_until_ns = b->state == RATCHET_BREAKER_OPEN ? b->open_until_ns : 0;
  m->total_successes = b->total_successes;
  m->total_failures = b->total_failures;
  m->total_not_permitted = b->total_not_permitted;
  m->total_transitions = b->total_transitions;
  ratchet__spin_unlock(&b->lock);

  if (ch.n != 0)
    notify(b, &ch, now_ns);
}

const char *ratchet_breaker_state_name(ratchet_breaker_state s) {
  static const char *const names[RATCHET_BREAKER_STATE_COUNT] = {
      "CLOSED", "OPEN", "HALF_OPEN", "DISABLED", "FORCED_OPEN", "METRICS_ONLY"};
  return (unsigned)s < RATCHET_BREAKER_STATE_COUNT ? names[s] : "UNKNOWN";
}
