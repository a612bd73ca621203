/*
 * metrics_internal.h - the state of a ratchet_metrics object, shared by
 * metrics.c (the tables and the exposition text) and metrics_http.c (the
 * libmicrohttpd server).
 */
#ifndef RATCHET_METRICS_INTERNAL_H
#define RATCHET_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ratchet/breaker.h"
#include "ratchet/metrics.h"

/* What the event subscriber counts for one pool. */
typedef struct ratchet__metrics_pool {
  uint64_t starts, exits, restarts, recycles, hangs;
  bool failed;
} ratchet__metrics_pool;

/* One breaker group, known once it has changed state. */
typedef struct ratchet__metrics_group {
  char *name;
  int state; /* ratchet_breaker_state */
  uint64_t transitions[RATCHET_BREAKER_STATE_COUNT]
                      [RATCHET_BREAKER_STATE_COUNT]; /* [from][to] */
} ratchet__metrics_group;

struct ratchet_metrics {
  /* orch is NULL once detached; last is then the final snapshot. Both are
   * read and written under orch_lock, which a render holds while it takes
   * and renders its snapshot, so that detach cannot free the orchestrator
   * from under a render on another thread. */
  pthread_mutex_t orch_lock;
  ratchet_orch *orch;
  ratchet_stats *last;
  ratchet_subscription *sub; /* loop thread only */

  /* The event subscriber's tables, under lock. */
  pthread_mutex_t lock;
  ratchet__metrics_pool *pools;
  uint32_t n_pools;
  ratchet__metrics_group *groups;
  size_t n_groups, cap_groups;
  uint64_t events_lost; /* events not counted: no memory for a new row */

  /* The HTTP server (metrics_http.c). */
  struct MHD_Daemon *httpd;
  _Atomic uint16_t port;
};

/* Stops the HTTP server if it runs (metrics_http.c). */
void ratchet__metrics_http_stop(ratchet_metrics *m);

#endif
