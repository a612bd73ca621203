/*
 * supervisor.c - the pool's restart decisions, kept apart from the plumbing
 * of pool.c and its siblings so that the rules read in one place.
 *
 * The restart policy is a table, next[policy][how it ended] (s6-supervise's
 * actions[state][event]): PERMANENT restarts whatever happened, TRANSIENT
 * only after an abnormal end, TEMPORARY never; an end the pool asked for is
 * never restarted. The intensity limit is a ring of the last `max` restart
 * times: a new restart while the oldest of them is still within the period
 * is one too many (Erlang/OTP's MaxR in MaxT). The flapping rule, which
 * needs the worker's history, lives in pool_frames.c next to the counters it
 * reads.
 */
#define _GNU_SOURCE /* pool_internal.h includes uv.h, which needs POSIX */
#include <errno.h>

#include "pool_internal.h"
#include "ratchet/alloc.h"

static const ratchet__action next_action[3][RATCHET__END_KINDS] = {
    /*                          REQUESTED          CLEAN ABNORMAL */
    [RATCHET_RESTART_PERMANENT] = {RATCHET__ACT_STOP, RATCHET__ACT_RESTART,
                                   RATCHET__ACT_RESTART},
    [RATCHET_RESTART_TRANSIENT] = {RATCHET__ACT_STOP, RATCHET__ACT_STOP,
                                   RATCHET__ACT_RESTART},
    [RATCHET_RESTART_TEMPORARY] = {RATCHET__ACT_STOP, RATCHET__ACT_STOP,
                                   RATCHET__ACT_STOP},
};

ratchet__action ratchet__restart_action(ratchet_restart_policy policy,
                                        ratchet__end_kind end) {
  if ((unsigned)policy > RATCHET_RESTART_TEMPORARY ||
      (unsigned)end >= RATCHET__END_KINDS)
    return RATCHET__ACT_STOP;
  return next_action[policy][end];
}

int ratchet__intensity_init(ratchet__intensity *in, uint32_t max,
                            uint64_t period_ns) {
  in->ring = NULL;
  in->max = max;
  in->count = 0;
  in->head = 0;
  in->period_ns = period_ns;
  if (max == 0)
    return 0;
  in->ring = ratchet_calloc(max, sizeof *in->ring);
  return in->ring == NULL ? -ENOMEM : 0;
}

void ratchet__intensity_free(ratchet__intensity *in) {
  ratchet_free(in->ring);
  in->ring = NULL;
}

bool ratchet__intensity_note(ratchet__intensity *in, uint64_t now_ns) {
  if (in->max == 0)
    return false;
  if (in->count == in->max) {
    /* ring[head] is the oldest of the last max restarts. */
    if (now_ns - in->ring[in->head] < in->period_ns)
      return true;
    in->ring[in->head] = now_ns;
    in->head = (in->head + 1) % in->max;
    return false;
  }
  in->ring[(in->head + in->count) % in->max] = now_ns;
  in->count++;
  return false;
}
