/*
 * acct.h - the orchestrator's accounting and kind table (private).
 *
 * Kinds are interned: ratchet__acct_kind returns one ratchet__kind per
 * distinct name for the table's life, so the orchestrator stores a pointer
 * per task instead of a copy of the name, and compares kinds by pointer. A
 * ratchet__kind carries that kind's counters and per-status histograms.
 *
 * Threads: the orchestrator's loop thread interns and records; any thread
 * may take a snapshot. One mutex guards the numbers (records are a few
 * additions; the lock is uncontended but for snapshots).
 */
#ifndef RATCHET_ACCT_H
#define RATCHET_ACCT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/accounting.h"

typedef struct ratchet__acct ratchet__acct;
typedef struct ratchet__kind ratchet__kind;

/* 0 and *out; -ENOMEM. */
int ratchet__acct_new(ratchet__acct **out);
/* NULL is a no-op. Every ratchet__kind dies with it. */
void ratchet__acct_free(ratchet__acct *a);

/* The interned kind named name[0..len) (copied on first sight; name need
 * not be NUL-terminated): the same pointer for equal names. NULL on -ENOMEM
 * or when len > 1024 (the table is then unchanged). Loop thread. */
ratchet__kind *ratchet__acct_kind(ratchet__acct *a, const char *name,
                                  size_t len);
/* The kind's name, NUL-terminated, valid for the table's life. */
const char *ratchet__kind_name(const ratchet__kind *k);
/* Its length. */
size_t ratchet__kind_len(const ratchet__kind *k);
/* A pointer-sized slot the orchestrator may use (per-kind breaker), NULL
 * at first. */
void **ratchet__kind_user(ratchet__kind *k);

/* Adds n to counter c of kind k. */
void ratchet__acct_count(ratchet__acct *a, ratchet__kind *k, ratchet_counter c,
                         uint64_t n);

/* Records a final outcome of kind k with status s: count, end_to_end; and,
 * when ran (the task reached a worker), queue_wait and run. */
void ratchet__acct_final(ratchet__acct *a, ratchet__kind *k, ratchet_status s,
                         bool ran, uint64_t queue_wait_ns, uint64_t run_ns,
                         uint64_t end_to_end_ns);

/* The gauges a snapshot carries, filled in by the orchestrator. */
typedef struct ratchet__gauges {
  uint64_t taken_ns, queued, delayed, in_flight, workers_ready;
} ratchet__gauges;

/* A copy of everything (see ratchet_stats): 0 and *out (ratchet_stats_free);
 * -ENOMEM. Any thread. */
int ratchet__acct_snapshot(ratchet__acct *a, const ratchet__gauges *g,
                           ratchet_stats **out);

#endif
