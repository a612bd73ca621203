/*
 * events.c - the event bus of the orchestrator (ratchet/events.h).
 *
 * A bus is a list of subscriptions in the order they were made, a sequence
 * counter and the union of the subscribers' type masks, which is all that
 * ratchet_events_wanted reads. Publish stamps the event and walks the list.
 *
 * An inline subscription is called right there, on the publishing thread.
 * A buffered one owns a ring of fixed-size slots, a mutex, a condition
 * variable and a delivery thread. Publish takes the mutex, copies the event
 * into the slot after the last one in use (strings into the slot's own
 * arrays, cut on a UTF-8 boundary, so nothing is allocated) and signals the
 * thread when the ring was empty; when every slot is in use it counts a drop
 * instead. The delivery thread calls the callback on the slot at the head
 * without holding the mutex and frees the slot only after the callback has
 * returned, so a slot is never written while it is being read and the
 * publisher waits at most for the few instructions the thread spends under
 * the mutex, never for a callback.
 *
 * Each slot also records how many events were dropped just before it went
 * in, and the thread reports those (and the drops after the last slot, when
 * it stops) through a private hook that the JSON-lines sink uses to write
 * its "dropped" lines in the right place of the stream. Unsubscribe sets a
 * stop flag; the thread delivers what the ring holds, then returns and is
 * joined.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "events_internal.h"
#include "ratchet/events.h"

#define MAX_BUFFER   1048576u
#define SHORT_ROOM   64   /* kind and group, NUL included */
#define MESSAGE_ROOM 1024 /* message, NUL included */

/* One event copied into a buffered subscription's ring. */
typedef struct slot {
  ratchet_event ev; /* its strings point at the arrays below */
  uint64_t dropped_before;
  char kind[SHORT_ROOM];
  char group[SHORT_ROOM];
  char message[MESSAGE_ROOM];
} slot;

struct ratchet_subscription {
  ratchet_subscription *next;
  uint64_t types;
  char *kind; /* NULL: every kind */
  ratchet_event_cb cb;
  void *ctx;
  void (*on_dropped)(void *ctx, uint64_t n);
  void (*on_close)(void *ctx);
  _Atomic uint64_t dropped;
  _Atomic uint64_t delivered;

  /* Buffered subscriptions only (cap > 0). The mutex guards head, count,
   * gap and stopping; the slots in [head, head + count) belong to the
   * delivery thread, the others to the publisher. */
  uint32_t cap;
  slot *ring;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  uint32_t head;
  uint32_t count;
  uint64_t gap; /* drops since the last slot went in */
  bool stopping;
};

struct ratchet_events {
  ratchet_subscription *subs;
  uint64_t seq;
  uint64_t wanted; /* union of the subscribers' masks */
};

static const char *const names[RATCHET_EV_COUNT] = {
    "submitted",    "dispatched",    "succeeded",         "failed",
    "lost",         "retry",         "deferred",          "rejected",
    "expired",      "cancelled",     "cache_hit",         "coalesced",
    "dead_letter",  "completed",     "task_log",          "worker_starting",
    "worker_ready", "worker_exited", "worker_restarting", "worker_recycled",
    "worker_hung",  "pool_failed",   "worker_stderr",     "breaker"};

const char *ratchet_event_type_name(ratchet_event_type t) {
  if ((unsigned)t >= RATCHET_EV_COUNT)
    return "unknown";
  return names[t];
}

int ratchet_event_type_parse(const char *s, ratchet_event_type *out) {
  if (s == NULL || out == NULL)
    return -EINVAL;
  for (unsigned i = 0; i < RATCHET_EV_COUNT; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (ratchet_event_type)i;
      return 0;
    }
  }
  return -EINVAL;
}

int ratchet_events_new(ratchet_events **out) {
  if (out == NULL)
    return -EINVAL;
  ratchet_events *bus = ratchet_calloc(1, sizeof *bus);
  if (bus == NULL)
    return -ENOMEM;
  *out = bus;
  return 0;
}

void ratchet_events_free(ratchet_events *bus) {
  if (bus == NULL)
    return;
  while (bus->subs != NULL)
    ratchet_events_unsubscribe(bus, bus->subs);
  ratchet_free(bus);
}

/* ---- Delivery thread ---------------------------------------------------- */

static void *deliver_main(void *arg) {
  ratchet_subscription *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (s->count == 0 && !s->stopping)
      pthread_cond_wait(&s->cv, &s->mu);
    if (s->count == 0)
      break; /* stopping, and everything delivered */
    slot *sl = &s->ring[s->head];
    pthread_mutex_unlock(&s->mu);

    if (sl->dropped_before > 0 && s->on_dropped != NULL)
      s->on_dropped(s->ctx, sl->dropped_before);
    s->cb(s->ctx, &sl->ev);

    /* Counted as the slot is given back: once delivered + dropped reaches
     * what was published, the ring is empty. */
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add_explicit(&s->delivered, 1, memory_order_relaxed);
    if (++s->head == s->cap)
      s->head = 0;
    s->count--;
  }
  uint64_t gap = s->gap;
  s->gap = 0;
  pthread_mutex_unlock(&s->mu);
  if (gap > 0 && s->on_dropped != NULL)
    s->on_dropped(s->ctx, gap);
  return NULL;
}

/* Starts the delivery thread with every signal blocked, so that signals go
 * to the program's own threads and a write to a closed pipe fails with
 * EPIPE instead of killing the process. Returns 0 or a positive errno. */
static int start_thread(ratchet_subscription *s) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&s->thread, NULL, deliver_main, s);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc;
}

/* ---- Subscribe ---------------------------------------------------------- */

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = ratchet_malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* Inline subscribers are called in the order they subscribed. */
static void append(ratchet_events *bus, ratchet_subscription *s) {
  ratchet_subscription **tail = &bus->subs;
  while (*tail != NULL)
    tail = &(*tail)->next;
  *tail = s;
  bus->wanted |= s->types;
}

static void recompute_wanted(ratchet_events *bus) {
  uint64_t m = 0;
  for (const ratchet_subscription *s = bus->subs; s != NULL; s = s->next)
    m |= s->types;
  bus->wanted = m;
}

int ratchet__events_subscribe_hooks(ratchet_events *bus,
                                    const ratchet_subscriber_options *o,
                                    void (*on_dropped)(void *ctx, uint64_t n),
                                    void (*on_close)(void *ctx),
                                    ratchet_subscription **out) {
  if (bus == NULL || o == NULL || out == NULL || o->cb == NULL ||
      o->buffer > MAX_BUFFER || (o->types & ~RATCHET_EV_ALL) != 0)
    return -EINVAL;
  ratchet_subscription *s = ratchet_calloc(1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->types = o->types != 0 ? o->types : RATCHET_EV_ALL;
  s->cb = o->cb;
  s->ctx = o->ctx;
  s->on_dropped = on_dropped;
  s->on_close = on_close;
  s->cap = o->buffer;
  atomic_init(&s->dropped, 0);
  atomic_init(&s->delivered, 0);
  int rc = -ENOMEM;
  if (o->kind != NULL && (s->kind = dup_string(o->kind)) == NULL)
    goto fail;

  if (s->cap > 0) {
    s->ring = ratchet_calloc(s->cap, sizeof *s->ring);
    if (s->ring == NULL)
      goto fail;
    if ((rc = pthread_mutex_init(&s->mu, NULL)) != 0) {
      rc = -rc;
      goto fail;
    }
    if ((rc = pthread_cond_init(&s->cv, NULL)) != 0) {
      rc = -rc;
      goto fail_mutex;
    }
    if ((rc = start_thread(s)) != 0) {
      rc = -rc;
      goto fail_cond;
    }
  }

  append(bus, s);
  *out = s;
  return 0;

fail_cond:
  pthread_cond_destroy(&s->cv);
fail_mutex:
  pthread_mutex_destroy(&s->mu);
fail:
  ratchet_free(s->ring);
  ratchet_free(s->kind);
  ratchet_free(s);
  return rc;
}

int ratchet_events_subscribe(ratchet_events *bus,
                             const ratchet_subscriber_options *o,
                             ratchet_subscription **out) {
  return ratchet__events_subscribe_hooks(bus, o, NULL, NULL, out);
}

void ratchet_events_unsubscribe(ratchet_events *bus, ratchet_subscription *s) {
  if (bus == NULL || s == NULL)
    return;
  ratchet_subscription **p = &bus->subs;
  while (*p != NULL && *p != s)
    p = &(*p)->next;
  if (*p == NULL)
    return; /* not one of this bus's */
  *p = s->next;
  recompute_wanted(bus);

  if (s->cap > 0) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
  }
  if (s->on_close != NULL)
    s->on_close(s->ctx);
  ratchet_free(s->ring);
  ratchet_free(s->kind);
  ratchet_free(s);
}

/* ---- Publish ------------------------------------------------------------ */

/* Copies s into dst (room bytes, NUL included), cutting it where it does
 * not fit before the character that would not fit whole: a cut never
 * leaves the first bytes of a UTF-8 sequence behind. At most three bytes
 * are given back, so that a run of stray continuation bytes is cut like
 * any other bytes. */
static void copy_cut(char *dst, size_t room, const char *s) {
  size_t n = strnlen(s, room);
  if (n == room) {
    n = room - 1;
    for (int back = 0;
         back < 3 && n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80; back++)
      n--;
    /* s[n] now starts the character that did not fit, unless the cut
     * fell inside a run of more continuation bytes than UTF-8 allows. */
    if (((unsigned char)s[n] & 0xC0) == 0x80)
      n = room - 1;
  }
  memcpy(dst, s, n);
  dst[n] = '\0';
}

static bool takes(const ratchet_subscription *s, const ratchet_event *ev) {
  if ((s->types & RATCHET_EV_BIT(ev->type)) == 0)
    return false;
  /* The kind filter applies to task events only. */
  if (s->kind != NULL && ev->type <= RATCHET_EV_TASK_LOG &&
      strcmp(s->kind, ev->kind) != 0)
    return false;
  return true;
}

static void enqueue(ratchet_subscription *s, const ratchet_event *ev) {
  pthread_mutex_lock(&s->mu);
  if (s->count == s->cap) {
    s->gap++;
    atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    return;
  }
  uint32_t i = s->head + s->count;
  if (i >= s->cap)
    i -= s->cap;
  slot *sl = &s->ring[i];
  sl->ev = *ev;
  copy_cut(sl->kind, sizeof sl->kind, ev->kind);
  copy_cut(sl->group, sizeof sl->group, ev->group);
  copy_cut(sl->message, sizeof sl->message, ev->message);
  sl->ev.kind = sl->kind;
  sl->ev.group = sl->group;
  sl->ev.message = sl->message;
  sl->dropped_before = s->gap;
  s->gap = 0;
  if (s->count++ == 0)
    pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* An event of an unknown type is not published: 0 is returned and ev is
 * left as it was. NULL strings are taken as "" (and set so in ev). */
uint64_t ratchet_events_publish(ratchet_events *bus, ratchet_event *ev) {
  if (bus == NULL || ev == NULL || (unsigned)ev->type >= RATCHET_EV_COUNT)
    return 0;
  ev->seq = ++bus->seq;
  if (ev->time_ns == 0)
    ev->time_ns = ratchet_now_ns();
  if (ev->wall_ms == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ev->wall_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  }
  if (ev->kind == NULL)
    ev->kind = "";
  if (ev->group == NULL)
    ev->group = "";
  if (ev->message == NULL)
    ev->message = "";

  for (ratchet_subscription *s = bus->subs; s != NULL; s = s->next) {
    if (!takes(s, ev))
      continue;
    if (s->cap > 0) {
      enqueue(s, ev);
    } else {
      s->cb(s->ctx, ev);
      atomic_fetch_add_explicit(&s->delivered, 1, memory_order_relaxed);
    }
  }
  return ev->seq;
}

bool ratchet_events_wanted(const ratchet_events *bus, ratchet_event_type type) {
  if (bus == NULL || (unsigned)type >= RATCHET_EV_COUNT)
    return false;
  return (bus->wanted & RATCHET_EV_BIT(type)) != 0;
}

uint64_t ratchet_events_dropped(const ratchet_subscription *s) {
  if (s == NULL)
    return 0;
  return atomic_load_explicit(&s->dropped, memory_order_relaxed);
}

uint64_t ratchet_events_delivered(const ratchet_subscription *s) {
  if (s == NULL)
    return 0;
  return atomic_load_explicit(&s->delivered, memory_order_relaxed);
}
