/*
 * record.h - what happened during a `ratchet run`, kept in memory for the
 * trace (trace.h) and the HTML report (report.h), with bounded size.
 *
 * The record subscribes to the orchestrator's events (inline, on the
 * loop) and is told each final result by the driver. It keeps:
 *
 *  - attempts: one slice per attempt (worker, start, duration, status,
 *    exit code), the first CLI_REC_MAX_SLICES of them; later ones are
 *    counted (slices_dropped);
 *  - instants: retries, lost attempts, worker exits, restarts, hangs and
 *    recycles, pool failures, breaker changes; the first
 *    CLI_REC_MAX_INSTANTS, the rest counted;
 *  - for every task, whatever its number: completions per time slot (for
 *    the throughput; slots of 100 ms, doubled whenever there would be more
 *    than CLI_REC_MAX_SLOTS of them), counts by kind and final status, the run
 * time of the last attempt in a ratchet_histogram per kind
 * (ratchet/accounting.h's buckets: powers of two microseconds), the retries;
 *  - the CLI_REC_SLOWEST slowest tasks, and the first CLI_REC_MAX_FAILURES
 *    final failures with the last lines of their stderr.
 *
 * Memory is therefore bounded by the constants below (about 13 MiB at
 * most, allocated as it fills), plus a table of the outstanding tasks
 * (about 100 bytes each).
 *
 * Times are nanoseconds since the record was created (the orchestrator's
 * monotonic clock, ratchet_now_ns). Not thread-safe: the loop thread only.
 */
#ifndef RATCHET_CLI_RECORD_H
#define RATCHET_CLI_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/accounting.h"
#include "ratchet/events.h"
#include "ratchet/orch.h"

#define CLI_REC_MAX_SLICES   50000u
#define CLI_REC_MAX_INSTANTS 20000u
#define CLI_REC_MAX_FAILURES 100u
#define CLI_REC_SLOWEST      10u
#define CLI_REC_MAX_KINDS    64u
#define CLI_REC_MAX_SLOTS    8192u

#define CLI_REC_NAME_MAX   64  /* a slice's name, with the NUL */
#define CLI_REC_ERROR_MAX  64  /* an attempt's error, with the NUL */
#define CLI_REC_LABEL_MAX  200 /* a task's command, with the NUL */
#define CLI_REC_TAIL_MAX   1024
#define CLI_REC_TAIL_LINES 8

/* One attempt on a worker. */
typedef struct cli_rec_slice {
  uint64_t start_ns, dur_ns;
  uint64_t task_id; /* the orchestrator's */
  uint64_t seq;     /* the input's number; 0 when unknown */
  int32_t pool, worker;
  uint32_t attempt;
  int status; /* ratchet_status of the attempt: ok, failed, timeout, lost */
  bool has_exit;
  int exit_code, term_signal;
  bool final; /* the task's last attempt */
  char name[CLI_REC_NAME_MAX];
  char error[CLI_REC_ERROR_MAX];
} cli_rec_slice;

/* One moment: a retry, a lost attempt, a worker or breaker change. */
typedef struct cli_rec_instant {
  ratchet_event_type type;
  uint64_t ts_ns;
  uint64_t task_id, seq;
  int32_t pool, worker; /* -1 when it concerns no worker */
  uint32_t attempt;
  int status, term_signal;
  uint64_t delay_ns;
  int from_state, to_state; /* BREAKER */
  char group[24];
  char message[CLI_REC_ERROR_MAX];
} cli_rec_instant;

/* A task, for the slowest-tasks and failures tables. */
typedef struct cli_rec_task {
  uint64_t seq;
  uint64_t run_ns;
  int status;
  int exit_code, term_signal;
  uint32_t attempts;
  char label[CLI_REC_LABEL_MAX];
  char error[256];
  char tail[CLI_REC_TAIL_MAX]; /* the last lines of its stderr */
} cli_rec_task;

typedef struct cli_rec_kind {
  char name[64];
  uint64_t by_status[RATCHET_STATUS_COUNT];
  uint64_t cached, retries, attempts;
  ratchet_histogram run; /* the last attempt of tasks that ran */
} cli_rec_kind;

/* How the record learns a task's number and input from the driver: 1 and
 * *seq, *input (borrowed until the call returns), or 0 if unknown. */
typedef bool (*cli_rec_lookup_fn)(void *ctx, uint64_t task_id, uint64_t *seq,
                                  const char **input);

typedef struct cli_rec cli_rec;

/* Creates an empty record; the clock starts now. 0 and *out, or -ENOMEM. */
int cli_rec_new(cli_rec_lookup_fn lookup, void *ctx, cli_rec **out);

/*
 * Subscribes the record (inline) to bus. The subscription belongs to the
 * bus (freed with it); the record must outlive the bus or be detached
 * with cli_rec_detach first. 0 or ratchet_events_subscribe's error.
 */
int cli_rec_attach(cli_rec *r, ratchet_events *bus);

/* Unsubscribes from bus (when the bus outlives the record). */
void cli_rec_detach(cli_rec *r, ratchet_events *bus);

/* Records a task's final result (res, label borrowed): seq, the command
 * as shown, and whether it was launched at all (tasks the run stopped
 * before they ran are left out of the counts). */
void cli_rec_done(cli_rec *r, uint64_t seq, const char *label, bool launched,
                  const ratchet_orch_result *res);

/* Feeds one event (what the subscription does; exposed for tests). */
void cli_rec_event(cli_rec *r, const ratchet_event *ev);

/* Marks the end of the run (the report's time axis ends here). */
void cli_rec_finish(cli_rec *r);

/* Frees r. NULL is a no-op. */
void cli_rec_free(cli_rec *r);

/* ---- reading, for trace.c and report.c ---- */

typedef struct cli_rec_view {
  uint64_t start_wall_ms; /* Unix time of the record's creation */
  uint64_t end_ns;        /* cli_rec_finish, or the last event */
  const cli_rec_slice *slices;
  size_t n_slices;
  uint64_t slices_dropped;
  const cli_rec_instant *instants;
  size_t n_instants;
  uint64_t instants_dropped;
  const cli_rec_kind *kinds;
  size_t n_kinds;
  cli_rec_kind total;
  const uint32_t *done, *failed; /* completions per slot of slot_ns */
  size_t n_slots;
  uint64_t slot_ns;
  const cli_rec_task *slowest; /* longest first */
  size_t n_slowest;
  const cli_rec_task *failures; /* in completion order */
  size_t n_failures;
  uint64_t failures_dropped;
  int32_t n_pools;                 /* pools seen (0 .. n_pools-1) */
  const int32_t *workers_per_pool; /* highest worker slot seen + 1 */
} cli_rec_view;

/* A view of r, valid until r changes or is freed. */
void cli_rec_view_get(const cli_rec *r, cli_rec_view *v);

#endif
