/*
 * ratchet/events.h - lifecycle events of an orchestrator, for subscribers.
 *
 * The orchestrator publishes one event for each step of a task's life
 * (submitted, dispatched, an attempt that succeeded or failed, a retry
 * scheduled, deferred, rejected by a breaker, expired, cancelled, a cache
 * hit, coalesced with a twin, dead-lettered, completed), for each step of a
 * worker's life (from its pool: starting, ready, exited, restarting,
 * recycled, hung, pool failed; its stderr lines; its Log frames) and for
 * every circuit breaker state change. Subscribers choose event types with a
 * mask and, optionally, one task kind.
 *
 * Two kinds of subscriber:
 *
 *  - inline (buffer 0): called on the publishing thread (the orchestrator's
 *    loop) inside publish. It must be quick and must not call back into
 *    the bus; it sees every event.
 *  - buffered (buffer N > 0): publish copies the event into the
 *    subscriber's ring of N slots and returns; a thread of the subscriber's
 *    own calls it. A slow subscriber never stalls the publisher: when its
 *    ring is full the event is dropped and counted (ratchet_events_dropped).
 *    Copies are made into fixed slots, so publishing allocates nothing:
 *    strings longer than the slot's room are cut (kind and group at 63
 *    bytes, message at 1023) on a UTF-8 character boundary.
 *
 * A JSON-lines sink (ratchet_events_jsonl_open) is a buffered subscriber that
 * writes one JSON object per event to a file, through jansson.
 *
 * Threads: publish is called from one thread at a time (the orchestrator's
 * loop). subscribe, unsubscribe and free must not run concurrently with
 * publish: call them from the publishing thread. ratchet_events_dropped may
 * be called from any thread.
 */
#ifndef RATCHET_EVENTS_H
#define RATCHET_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"
#include "ratchet/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_events ratchet_events;
typedef struct ratchet_subscription ratchet_subscription;

typedef enum ratchet_event_type {
  /* Tasks. */
  RATCHET_EV_SUBMITTED = 0,  /* accepted by submit */
  RATCHET_EV_DISPATCHED = 1, /* an attempt was sent: attempt, pool, worker */
  RATCHET_EV_SUCCEEDED = 2,  /* an attempt answered OK: duration_ns */
  RATCHET_EV_FAILED = 3,     /* an attempt failed: status, message */
  RATCHET_EV_LOST = 4,       /* an attempt's worker died/hung/broke: message */
  RATCHET_EV_RETRY = 5,      /* a retry is scheduled in delay_ns */
  RATCHET_EV_DEFERRED = 6,   /* held back delay_ns: rate limit, breaker */
  RATCHET_EV_REJECTED = 7,   /* an open breaker failed it fast: group */
  RATCHET_EV_EXPIRED = 8,    /* its expiry or deadline passed */
  RATCHET_EV_CANCELLED = 9,  /* cancelled by the user */
  RATCHET_EV_CACHE_HIT = 10, /* served from the result cache */
  RATCHET_EV_COALESCED = 11, /* joined an identical task: related_id */
  RATCHET_EV_DEAD_LETTER = 12, /* a final failure went to the dead letter */
  RATCHET_EV_COMPLETED = 13,   /* the final outcome: status, duration_ns
                                  (end to end) */
  RATCHET_EV_TASK_LOG = 14,    /* a Log frame of a task: level, message */
  /* Workers (pool events). */
  RATCHET_EV_WORKER_STARTING = 15, /* pid */
  RATCHET_EV_WORKER_READY = 16,
  RATCHET_EV_WORKER_EXITED = 17,     /* status: exit status or -1, signal */
  RATCHET_EV_WORKER_RESTARTING = 18, /* delay_ns */
  RATCHET_EV_WORKER_RECYCLED = 19,
  RATCHET_EV_WORKER_HUNG = 20,
  RATCHET_EV_POOL_FAILED = 21,   /* the pool gave up: message */
  RATCHET_EV_WORKER_STDERR = 22, /* one line of a worker's stderr */
  /* Breakers. */
  RATCHET_EV_BREAKER = 23 /* group, from_state -> to_state */
} ratchet_event_type;

#define RATCHET_EV_COUNT 24

/* Masks for subscriber filters. */
#define RATCHET_EV_BIT(t)   (UINT64_C(1) << (t))
#define RATCHET_EV_ALL      ((UINT64_C(1) << RATCHET_EV_COUNT) - 1)
#define RATCHET_EV_TASK_ALL ((UINT64_C(1) << (RATCHET_EV_TASK_LOG + 1)) - 1)
#define RATCHET_EV_WORKER_ALL                                                  \
  (RATCHET_EV_ALL & ~RATCHET_EV_TASK_ALL & ~RATCHET_EV_BIT(RATCHET_EV_BREAKER))

/*
 * One event. Strings are never NULL ("" when absent); everything is
 * borrowed until the callback returns.
 *
 * seq        increasing per bus, from 1, counting every published event
 *            (including those a subscriber's filter or full ring skipped)
 * time_ns    monotonic clock of the orchestrator; wall_ms Unix-epoch ms
 * task_id    0 when the event is not about a task
 * kind       the task's kind (task events); "" otherwise
 * attempt    the attempt concerned (1 for the first), 0 when none
 * pool, worker, pid  where it ran; -1/-1/0 when none
 * status     task events: a ratchet_status; WORKER_EXITED: the exit status,
 *            or -1 when killed by signal; otherwise 0
 * signal     WORKER_EXITED: the signal; 0 otherwise
 * delay_ns   RETRY, DEFERRED, WORKER_RESTARTING
 * duration_ns SUCCEEDED/FAILED: the attempt's run time; COMPLETED: end to
 *            end (submit to completion)
 * related_id COALESCED: the task it joined; 0 otherwise
 * level      TASK_LOG: the Log frame's level (ratchet.v1.LogLevel)
 * group      BREAKER, REJECTED, DEFERRED: the breaker or rate-limit group
 * from_state, to_state  BREAKER: ratchet_breaker_state values
 * message    a sentence for a human, the stderr line, or the log text
 */
typedef struct ratchet_event {
  ratchet_event_type type;
  uint64_t seq;
  uint64_t time_ns;
  uint64_t wall_ms;
  uint64_t task_id;
  const char *kind;
  uint32_t attempt;
  int32_t pool;
  int32_t worker;
  int pid;
  int status;
  int signal;
  uint64_t delay_ns;
  uint64_t duration_ns;
  uint64_t related_id;
  int level;
  const char *group;
  int from_state;
  int to_state;
  const char *message;
} ratchet_event;

/* An event with every field at its "absent" value; set type and what
 * applies. */
#define RATCHET_EVENT_INIT                                                     \
  {                                                                            \
    .type = RATCHET_EV_SUBMITTED, .seq = 0, .time_ns = 0, .wall_ms = 0,        \
    .task_id = 0, .kind = "", .attempt = 0, .pool = -1, .worker = -1,          \
    .pid = 0, .status = 0, .signal = 0, .delay_ns = 0, .duration_ns = 0,       \
    .related_id = 0, .level = 0, .group = "", .from_state = 0, .to_state = 0,  \
    .message = ""                                                              \
  }

/* A subscriber: ev borrowed until it returns. */
typedef void (*ratchet_event_cb)(void *ctx, const ratchet_event *ev);

/*
 * types   mask of RATCHET_EV_BIT(type) [RATCHET_EV_ALL; 0 means all]
 * kind    only task events of this kind (copied); worker and breaker events
 *         pass regardless [NULL: every kind]
 * buffer  0: inline; else the ring's slots (1 .. 1048576) [0]
 * cb, ctx required; ctx borrowed until unsubscribe
 */
typedef struct ratchet_subscriber_options {
  uint64_t types;
  const char *kind;
  uint32_t buffer;
  ratchet_event_cb cb;
  void *ctx;
} ratchet_subscriber_options;

#define RATCHET_SUBSCRIBER_OPTIONS_INIT                                        \
  {                                                                            \
    .types = RATCHET_EV_ALL, .kind = NULL, .buffer = 0, .cb = NULL,            \
    .ctx = NULL                                                                \
  }

/* Creates a bus. 0 and *out; -ENOMEM. */
RATCHET_API int ratchet_events_new(ratchet_events **out);

/* Unsubscribes everyone (as ratchet_events_unsubscribe) and frees the bus.
 * NULL is a no-op. */
RATCHET_API void ratchet_events_free(ratchet_events *bus);

/*
 * Adds a subscriber. Returns 0 and *out (a handle for unsubscribe, owned by
 * the bus); -EINVAL (no cb, buffer out of range, types with unknown bits);
 * -ENOMEM; or pthread_create's error (negated) for a buffered one. On
 * failure nothing is added.
 */
RATCHET_API int ratchet_events_subscribe(ratchet_events *bus,
                                         const ratchet_subscriber_options *o,
                                         ratchet_subscription **out);

/* Removes a subscriber: a buffered one first delivers what its ring holds,
 * then its thread is joined. s is freed. NULL is a no-op. */
RATCHET_API void ratchet_events_unsubscribe(ratchet_events *bus,
                                            ratchet_subscription *s);

/*
 * Publishes ev to every subscriber whose filter takes it; sets ev->seq
 * first (and returns it). time_ns and wall_ms are taken from the clocks when
 * 0. Never blocks on a buffered subscriber, never allocates.
 */
RATCHET_API uint64_t ratchet_events_publish(ratchet_events *bus,
                                            ratchet_event *ev);

/* True when some subscriber's filter takes events of this type (publishers
 * skip building events nobody wants). */
RATCHET_API bool ratchet_events_wanted(const ratchet_events *bus,
                                       ratchet_event_type type);

/* Events dropped so far because s's ring was full (0 for an inline one).
 * Any thread. */
RATCHET_API uint64_t ratchet_events_dropped(const ratchet_subscription *s);

/* Events delivered to s's callback so far. Any thread. */
RATCHET_API uint64_t ratchet_events_delivered(const ratchet_subscription *s);

/*
 * Opens a JSON-lines sink: a buffered subscriber (types as for subscribe, 0
 * = all; ring of `buffer` slots, 0 = 4096) appending one JSON object per
 * event to path (created 0644, opened O_APPEND; "-" is stdout). Each line is
 * written with one write(2), so a crash never leaves half a line except at
 * the very end. Fields: seq, time_ns, wall_ms, type (ratchet_event_type_name),
 * and those that apply: task_id, kind, attempt, pool, worker, pid, status
 * (ratchet_status_name for task events, the number for WORKER_EXITED),
 * signal, delay_ms, duration_ms, related_id, level, group, from, to
 * (ratchet_breaker_state_name), message. Dropped events are reported as a
 * line {"type":"dropped","count":N} once there is room again.
 * Returns 0 and *out (unsubscribe closes the file); -EINVAL; -ENOMEM; open's
 * error (negated).
 */
RATCHET_API int ratchet_events_jsonl_open(ratchet_events *bus, const char *path,
                                          uint64_t types, uint32_t buffer,
                                          ratchet_subscription **out);

/* "submitted", "dispatched", "succeeded", "failed", "lost", "retry",
 * "deferred", "rejected", "expired", "cancelled", "cache_hit", "coalesced",
 * "dead_letter", "completed", "task_log", "worker_starting", "worker_ready",
 * "worker_exited", "worker_restarting", "worker_recycled", "worker_hung",
 * "pool_failed", "worker_stderr", "breaker"; "unknown" otherwise. Static. */
RATCHET_API const char *ratchet_event_type_name(ratchet_event_type t);

/* The type named s: 0 and *out, or -EINVAL. */
RATCHET_API int ratchet_event_type_parse(const char *s,
                                         ratchet_event_type *out);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_EVENTS_H */
