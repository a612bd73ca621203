/*
 * orch_testutil.h - the harness shared by the orchestrator's test groups
 * (test_orch.c, test_orch_chaos.c): the worker process they run, a loop with
 * an orchestrator over one pool of such workers, a record of every
 * completion callback and of every event, and the checks made when it is
 * closed (exactly one outcome per task, no process and no descriptor left).
 *
 * The workers are this test binary run again as "--child orch-worker"
 * (SPAWN), or a forked copy serving the same handlers (FORK). Spawned
 * workers are what valgrind needs: with --trace-children=no only the
 * orchestrator is traced, so they run at full speed and their own exits
 * cannot change valgrind's verdict.
 *
 * Handlers (kind: what the payload means -> what the worker answers):
 *   echo     anything -> OK, the payload as output
 *   fail     anything -> FAILED, "always fails (attempt N)"
 *   flaky    "N" -> FAILED on attempts 1..N, then OK with the payload
 *   status   "S" -> the ratchet_task_status S, error "status S"
 *   sleep    "MS" -> OK with the payload after MS milliseconds, polling
 *            ratchet_task_cancelled; if cancelled, output "saw-cancel" and
 *            the status the library gives (CANCELLED, TIMEOUT)
 *   hang     anything -> sleeps without ever polling (killed at close)
 * sleep and hang send a Log line "started" first (a TASK_LOG event), so a
 * test can wait until the handler runs rather than until the Task frame
 * was written.
 *   die      anything -> _exit(3): the worker dies under the task
 *   pid      anything -> OK, the worker's pid in decimal
 *   produce  "N" -> OK, with N children of kind echo, payloads "child-I"
 *   meta     anything -> OK, output "<metadata k>|<payload>"
 *   chaos    "I" -> ot_chaos_expect(I) decides (see below)
 */
#ifndef RATCHET_ORCH_TESTUTIL_H
#define RATCHET_ORCH_TESTUTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ratchet/orch.h"
#include "testutil.h"

/* ---- the chaos handler's plan ---------------------------------------- */

typedef enum ot_chaos_class {
  OT_CHAOS_OK = 0,        /* succeeds at once */
  OT_CHAOS_TRANSIENT = 1, /* fails attempts below ot_chaos_fail_below() */
  OT_CHAOS_ALWAYS = 2,    /* fails every attempt */
  OT_CHAOS_PILL = 3       /* kills its worker every time it runs */
} ot_chaos_class;

/* What task payload "I" does, a pure function of I (both sides agree). */
ot_chaos_class ot_chaos_class_of(uint32_t i);
/* For TRANSIENT tasks: the first attempt that succeeds (2 or 3). */
uint32_t ot_chaos_fail_below(uint32_t i);

/* ---- the harness ------------------------------------------------------ */

/* One completion callback, kept per task id. */
typedef struct ot_res {
  bool submitted; /* accepted by ot_submit: must complete exactly once */
  unsigned calls; /* completion callbacks seen for this id */
  unsigned order; /* 1-based position among all completions */
  ratchet_status status;
  uint32_t attempts, crashes;
  bool cached, coalesced;
  uint64_t related_id;
  int32_t pool, worker;
  uint64_t submitted_ns, first_dispatch_ns, finished_ns;
  char kind[32];
  char output[64];
  size_t output_len;
  char error[256];
} ot_res;

/* One event, as an inline subscriber saw it. */
typedef struct ot_ev {
  ratchet_event_type type;
  uint64_t seq, time_ns, task_id, delay_ns, related_id;
  uint32_t attempt;
  int32_t worker;
  int pid, status, from_state, to_state;
  char kind[32];
  char group[32];
  char message[160];
} ot_ev;

typedef struct ot_options {
  ratchet_pool_mode mode; /* SPAWN [default] or FORK */
  uint32_t size;          /* workers [2] */
  uint32_t depth;         /* pipeline depth [1] */
  uint32_t poison_threshold;
  uint32_t close_grace_ms, kill_grace_ms;
  const char *const *kinds; /* the pool's kinds [NULL: all] */
  bool record_events;       /* keep every event in ot.ev [true] */
  bool start;               /* start and wait for READY [true] */
  bool limits_off;          /* no intensity or flap limit [false] */
  bool add_pool;            /* add the pool [true] */
} ot_options;

#define OT_OPTIONS_INIT                                                        \
  {                                                                            \
    .mode = RATCHET_POOL_SPAWN, .size = 2, .depth = 1, .poison_threshold = 3,  \
    .close_grace_ms = 5000, .kill_grace_ms = 2000, .kinds = NULL,              \
    .record_events = true, .start = true, .limits_off = false,                 \
    .add_pool = true                                                           \
  }

typedef struct ot {
  uv_loop_t loop;
  uv_timer_t watchdog, sleeper;
  bool timed_out, slept;
  ratchet_orch *o;
  ratchet_subscription *sub;
  pthread_t loop_thread;
  int fds_before;
  bool close_begun, closed;
  unsigned close_calls;
  uint64_t close_done_snapshot; /* completions when close's callback ran */
  /* Completions, indexed by task id. */
  ot_res *res;
  size_t cap_res;
  unsigned n_done;
  unsigned dup_calls;  /* callbacks for an id seen before */
  unsigned off_thread; /* callbacks not on the loop's thread */
  /* Events (when recorded). */
  ot_ev *ev;
  size_t n_ev, cap_ev;
  unsigned n_ready, n_exited;
  /* Every worker pid the pool started. */
  int *pids;
  size_t n_pids, cap_pids;
  struct ratchet_worker *fork_worker; /* FORK mode's registry */
} ot;

/* True when running under valgrind (its preload library is in LD_PRELOAD). */
bool ot_under_valgrind(void);

/* The pool options a harness uses (spawn of this binary, fast restarts). */
ratchet_pool_options ot_pool_options(ot *t, const ot_options *oo);

/* Creates the loop and the orchestrator (opt may be NULL for the defaults;
 * its data is replaced), subscribes the recorder, adds the pool and, when
 * oo->start, starts it and waits for every worker's READY. */
ot *ot_new(const ot_options *oo, const ratchet_orch_options *opt);
/* Starts (for ot_options.start = false) and waits for n READY events. */
void ot_start(ot *t, unsigned n);

/* The recording completion callback (data: the ot). */
void ot_on_done(ratchet_orch *o, const ratchet_orch_result *r, void *data);

/* A spec of kind and payload (a string) completing through ot_on_done. */
ratchet_task_spec ot_spec(ot *t, const char *kind, const char *payload);
/* Submits; asserts success; returns the id. */
uint64_t ot_submit(ot *t, const ratchet_task_spec *s);
/* Marks id as a task ot_close checks for exactly one outcome (for tasks
 * submitted otherwise, from a callback say). */
void ot_mark_submitted(ot *t, uint64_t id);

typedef bool (*ot_pred)(ot *t, uintptr_t arg);
/* Runs the loop until pred holds (asserts that the watchdog did not
 * fire). */
void ot_run_until(ot *t, ot_pred pred, uintptr_t arg);
/* Runs the loop for at least ms milliseconds. */
void ot_sleep_ms(ot *t, unsigned ms);

bool ot_p_done(ot *t, uintptr_t n);       /* n completions */
bool ot_p_task_done(ot *t, uintptr_t id); /* task id completed */
bool ot_p_ready(ot *t, uintptr_t n);      /* n READY events */
bool ot_p_closed(ot *t, uintptr_t n);     /* close's callback ran */

/* Task id's record (NULL if it never completed). */
const ot_res *ot_result(const ot *t, uint64_t id);
/* How many recorded events have type (and task id, unless 0). */
unsigned ot_count_events(const ot *t, ratchet_event_type type, uint64_t id);
/* The nth (0-based) event of type for task id (any task when 0), or NULL. */
const ot_ev *ot_find_event(const ot *t, ratchet_event_type type, uint64_t id,
                           unsigned nth);
/* Predicate: an event of type arg>>56 for task arg & (2^56-1) was seen. */
bool ot_p_event(ot *t, uintptr_t arg);
#define OT_EV_ARG(type, id) (((uintptr_t)(type) << 56) | (uintptr_t)(id))

/* Calls ratchet_orch_close with the harness's callback (ot_p_closed). */
void ot_begin_close(ot *t);

/* Closes the orchestrator (unless ot_begin_close did), runs the loop until
 * its callback, checks that every task ot_submit accepted completed exactly
 * once, every callback ran on the loop's thread before close's, that no
 * process the pool started is left and that no descriptor leaked; frees
 * the harness. */
void ot_close(ot *t);

/* The pid of worker w of pool 0 (0 if none). */
int ot_worker_pid(ot *t, uint32_t w);

/* Milliseconds as nanoseconds. */
#define OT_MS(n) ((uint64_t)(n)*UINT64_C(1000000))

#endif
