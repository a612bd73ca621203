/*
 * ratchet/singleflight.h - one computation per key, however many ask.
 *
 * When several callers want the value of one key at once, the first becomes
 * the leader and computes it; the others wait for the leader's result
 * instead of computing it again (Go's x/sync/singleflight). ratchet's
 * runtime uses it to coalesce identical in-flight tasks.
 *
 * Two ways to wait, on one group:
 *
 *  - Callbacks, for event loops (one thread, never blocks):
 *    ratchet_singleflight_join() makes the caller the leader or queues its
 *    callback. The leader computes however it likes (asynchronously) and
 *    calls ratchet_singleflight_finish(); every callback of that flight,
 *    the leader's included, then runs once, in join order, inside finish.
 *
 *  - Blocking, for threads: ratchet_singleflight_do() runs the compute
 *    function in the first caller's thread while the others sleep on a
 *    condition variable, and hands every caller a counted reference to the
 *    one result.
 *
 * Both may be used on the same group and even the same key. A flight ends
 * when its leader finishes; a join after that starts a new flight (results
 * are not cached: put them in a cache). Keys are byte strings, copied.
 *
 * Values. The group's destroy callback (options) frees a value when no one
 * holds it any more: after the last callback of its flight returned and
 * the last result referring to it was released. Without a destroy callback
 * the group never frees values and the leader must keep them alive for as
 * long as callers use them.
 *
 * Threads: every function may be called from any thread; the group uses
 * one mutex, never held while calling out.
 */
#ifndef RATCHET_SINGLEFLIGHT_H
#define RATCHET_SINGLEFLIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_singleflight ratchet_singleflight;
/* A caller's place in a flight (callback API). */
typedef struct ratchet_singleflight_ticket ratchet_singleflight_ticket;
/* A counted reference to a flight's result (blocking API). */
typedef struct ratchet_singleflight_result ratchet_singleflight_result;

/* Frees a value the group owns (see "Values" above). */
typedef void (*ratchet_singleflight_destroy_fn)(void *ctx, void *value,
                                                size_t size);

/* Options: destroy and destroy_ctx, both optional. */
typedef struct ratchet_singleflight_options {
  ratchet_singleflight_destroy_fn destroy;
  void *destroy_ctx;
} ratchet_singleflight_options;

#define RATCHET_SINGLEFLIGHT_OPTIONS_INIT                                      \
  { NULL, NULL }

/* What ratchet_singleflight_join made of the caller. */
enum {
  RATCHET_SINGLEFLIGHT_LEADER = 1,  /* compute, then call finish */
  RATCHET_SINGLEFLIGHT_FOLLOWER = 2 /* the callback will run */
};

/* Creates a group; o may be NULL. 0 and *out; -EINVAL; -ENOMEM. */
RATCHET_API int ratchet_singleflight_new(const ratchet_singleflight_options *o,
                                         ratchet_singleflight **out);

/* Frees the group. No flight may be in progress and every result must have
 * been released. NULL is a no-op. */
RATCHET_API void ratchet_singleflight_free(ratchet_singleflight *g);

/* The number of flights in progress (keys with a leader at work). */
RATCHET_API size_t ratchet_singleflight_inflight(ratchet_singleflight *g);

/* The number of callers waiting for key's flight in progress (blocked
 * threads and queued callbacks, the leader not counted); 0 if none. */
RATCHET_API size_t ratchet_singleflight_waiting(ratchet_singleflight *g,
                                                const void *key, size_t len);

/* ---- callbacks (event loops) ---- */

/*
 * Called once per joined caller when its flight finishes, on the thread
 * that calls ratchet_singleflight_finish (or, if the leader used
 * ratchet_singleflight_do, on the leader's thread after fn returns). status
 * and value are the
 * leader's; value is borrowed until the callback returns. The callback may
 * call any group function, including join on the same key (which starts a
 * new flight) and leave on tickets of the same flight not yet called.
 */
typedef void (*ratchet_singleflight_cb)(void *ctx, int status,
                                        const void *value, size_t size);

/*
 * Joins the flight for key (len bytes, copied), starting one if there is
 * none. cb (may be NULL) runs when the flight finishes. Returns
 * RATCHET_SINGLEFLIGHT_LEADER (the caller must compute and then call
 * ratchet_singleflight_finish with *ticket) or RATCHET_SINGLEFLIGHT_FOLLOWER
 * (*ticket may be passed to ratchet_singleflight_leave until the callback
 * starts); -EINVAL; -ENOMEM (nothing changed).
 */
RATCHET_API int ratchet_singleflight_join(ratchet_singleflight *g,
                                          const void *key, size_t len,
                                          ratchet_singleflight_cb cb, void *ctx,
                                          ratchet_singleflight_ticket **ticket);

/*
 * Ends the leader's flight with status and value (size bytes; ownership
 * passes to the group, which frees it with its destroy callback when no one
 * holds it). Runs every callback of the flight in join order before
 * returning, wakes the threads blocked on it, and frees the ticket. A leader
 * that gives up finishes with an error status (e.g. -ECANCELED): the
 * followers see it and may join again. Returns 0, or -EINVAL if ticket is
 * not a leader's (nothing happens then).
 */
RATCHET_API int ratchet_singleflight_finish(ratchet_singleflight *g,
                                            ratchet_singleflight_ticket *ticket,
                                            int status, void *value,
                                            size_t size);

/*
 * A follower stops waiting: its callback will not run and the ticket is
 * freed. Returns 0, or -EINVAL for a leader's ticket (a leader must
 * finish). Must not race with the finish of the same flight on another
 * thread: in that case use ratchet_singleflight_do.
 */
RATCHET_API int ratchet_singleflight_leave(ratchet_singleflight *g,
                                           ratchet_singleflight_ticket *ticket);

/* ---- blocking (threads) ---- */

/* Computes a value: returns a status (0 or a negative error) and may set
 * *value and *size (ownership passes to the group). */
typedef int (*ratchet_singleflight_fn)(void *ctx, void **value, size_t *size);

/*
 * Returns the result for key: computed by fn(ctx, ...) in this thread if no
 * flight for key is in progress, else the in-progress flight's result,
 * waited for. Returns 0 and *result (release it with
 * ratchet_singleflight_release); -EINVAL; -ENOMEM. The status of the
 * computation is in the result, not in the return value. fn must not call
 * ratchet_singleflight_do for the same key (it would wait for itself).
 */
RATCHET_API int ratchet_singleflight_do(ratchet_singleflight *g,
                                        const void *key, size_t len,
                                        ratchet_singleflight_fn fn, void *ctx,
                                        ratchet_singleflight_result **result);

/* The result's status, value and size (borrowed until release). */
RATCHET_API int
ratchet_singleflight_status(const ratchet_singleflight_result *r);
RATCHET_API const void *
ratchet_singleflight_value(const ratchet_singleflight_result *r, size_t *size);
/* 1 if the result was handed to more than one caller (Go's "shared"):
 * followers joined the flight, by either API. */
RATCHET_API int
ratchet_singleflight_shared(const ratchet_singleflight_result *r);

/* Gives a result back; the last holder's release frees the value. */
RATCHET_API void ratchet_singleflight_release(ratchet_singleflight *g,
                                              ratchet_singleflight_result *r);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_SINGLEFLIGHT_H */
