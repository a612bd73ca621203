/*
 * ratchet/pool.h - a supervised pool of worker processes.
 *
 * A pool runs `size` worker processes on a libuv loop and speaks the
 * orchestrator side of docs/protocol.md with each of them over its stdin and
 * stdout. Workers are either forked copies of the calling program that run a
 * function of it (RATCHET_POOL_FORK, no exec) or any executable that speaks
 * the protocol (RATCHET_POOL_SPAWN, with argv, env and cwd). Each worker's
 * stderr is read line by line and handed to the owner with the worker's id.
 *
 * The owner (the orchestrator) sends tasks with ratchet_pool_dispatch, to a
 * chosen worker or the least loaded ready one, and gets exactly one outcome
 * per accepted task through on_outcome: the worker's Result, or "lost" (the
 * worker died, hung or broke the protocol, or the pool closed) with the
 * reason and the task's crash count. The pool never retries a task itself:
 * requeueing a lost task is the owner's decision (at-least-once), and the
 * owner carries the crash count from one dispatch to the next.
 *
 * The supervisor restarts workers that end, following the restart policy,
 * after a delay from libratchet-resilience's backoff, and fails the pool -
 * with an event naming the cause - when workers flap (die before Ready, or
 * keep dying on their first task) or restart more often than the intensity
 * limit allows, instead of spinning.
 *
 * No orphans: every worker leads its own process group (pgid == pid) and
 * gets PR_SET_PDEATHSIG(SIGKILL); signals go to the whole group, and the
 * group is SIGKILLed when its leader exits, so nothing the pool started -
 * grandchildren included - outlives the worker, unless it left the group
 * (setsid/setpgid), which only a cgroup could catch.
 *
 * Threads: a pool belongs to its loop's thread; every function must be called
 * from it, and every callback comes from it. The pool installs a uv_signal_t
 * on SIGCHLD and reaps only the pids it started (waitpid by pid), so it lives
 * alongside uv_spawn and other pools on the same loop. Because
 * PR_SET_PDEATHSIG fires when the *thread* that forked dies, the loop's
 * thread must outlive the pool.
 *
 * docs/runtime.md is the guide (to be written).
 */
#ifndef RATCHET_POOL_H
#define RATCHET_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/backoff.h"
#include "ratchet/export.h"
#include "ratchet/ratchet.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_pool ratchet_pool;

/* libuv's loop, declared rather than included (see ratchet/transport.h). */
struct uv_loop_s;
/* The worker side (ratchet/worker.h). */
struct ratchet_worker;

/* "Any ready worker" for ratchet_pool_dispatch. */
#define RATCHET_POOL_ANY UINT32_MAX

/* The largest pool. */
#define RATCHET_POOL_MAX_SIZE 4096u

typedef enum ratchet_pool_mode {
  /* Execute options.argv[0] (searched in PATH when it holds no '/'). */
  RATCHET_POOL_SPAWN = 0,
  /* fork() the calling program; the child runs options.fork_main. */
  RATCHET_POOL_FORK = 1
} ratchet_pool_mode;

/* What the supervisor does when a worker ends (Erlang/OTP's child restart
 * types). An end the pool asked for (close, resize down, recycling) is never
 * restarted. */
typedef enum ratchet_restart_policy {
  RATCHET_RESTART_PERMANENT = 0, /* always restart */
  RATCHET_RESTART_TRANSIENT = 1, /* restart unless it exited with status 0 */
  RATCHET_RESTART_TEMPORARY = 2  /* never restart; the slot stays empty */
} ratchet_restart_policy;

/* Why a task was lost. */
typedef enum ratchet_pool_lost_reason {
  /* The worker ended (exited, was killed, or closed its stdout) while
   * running the task: the oldest task in flight on it, since a worker runs
   * its tasks in order. Counts as a crash of the task. */
  RATCHET_POOL_LOST_DIED = 1,
  /* The worker broke the protocol (a bad frame, a message out of turn, an
   * Error frame) while running the task (the oldest in flight). Counts as a
   * crash. */
  RATCHET_POOL_LOST_PROTOCOL = 2,
  /* The task overran its deadline (task_timeout_ms or its own
   * deadline_unix_ms), did not answer the Cancel within kill_grace_ms, and
   * the worker was killed. Counts as a crash, so a task that keeps hanging
   * becomes a poison pill. */
  RATCHET_POOL_LOST_HUNG = 3,
  /* The pool closed (or the worker was stopped by the pool: resize down)
   * before the Result came; or the task was pipelined behind an overdue
   * task on a worker that was killed as hung. Does not count as a crash. */
  RATCHET_POOL_LOST_CLOSED = 4,
  /* The task could not be sent (too big for the worker, ...). Does not
   * count as a crash. Reported from the loop, never from dispatch. */
  RATCHET_POOL_LOST_SEND = 5,
  /* The worker ended (or broke the protocol) while the task was pipelined
   * behind the one it was running, so the task never ran. Does not count as a
   * crash: only the running task is blamed, so the tasks queued behind a poison
   * pill do not become poison pills with it. */
  RATCHET_POOL_LOST_QUEUED = 6
} ratchet_pool_lost_reason;

/*
 * The outcome of one task: exactly one per task accepted by dispatch.
 * Everything is borrowed until the callback returns.
 *
 * task_id, worker_id: the task and the worker slot it was sent to.
 * result: the worker's Result, or NULL when the task was lost.
 * lost, reason: when result is NULL, why, and a sentence for a human
 *   ("worker 2 (pid 4242) was killed by signal 9 (SIGKILL)").
 * crash_count: the crashes the task has caused so far, this one included:
 *   the count given to dispatch, plus one if this loss counts as a crash.
 * poison: crash_count reached options.poison_threshold; the owner should
 *   dead-letter the task rather than dispatch it again.
 */
typedef struct ratchet_pool_outcome {
  uint64_t task_id;
  uint32_t worker_id;
  const Ratchet__V1__Result *result;
  ratchet_pool_lost_reason lost;
  const char *reason;
  uint32_t crash_count;
  bool poison;
} ratchet_pool_outcome;

typedef enum ratchet_pool_event_type {
  RATCHET_POOL_EVENT_STARTING = 1,   /* a process was started; pid set */
  RATCHET_POOL_EVENT_READY = 2,      /* its Ready arrived */
  RATCHET_POOL_EVENT_EXITED = 3,     /* it was reaped; exit fields set */
  RATCHET_POOL_EVENT_RESTARTING = 4, /* a restart in delay_ns */
  RATCHET_POOL_EVENT_RECYCLED = 5,   /* retired: task count or RSS */
  RATCHET_POOL_EVENT_HUNG = 6,       /* no Ready / Pong / Result in time */
  RATCHET_POOL_EVENT_FAILED = 7,     /* the pool gave up; message says why */
  RATCHET_POOL_EVENT_CLOSED = 8      /* unused: see ratchet_pool_close_cb */
} ratchet_pool_event_type;

/*
 * An event for observers. Borrowed until the callback returns.
 *
 * worker_id: the slot (0 .. size-1); generation: how many processes the slot
 *   has started, this one included (0 for FAILED). pid: the process.
 * EXITED: exit_status (>= 0) when it exited, else -1 and term_signal set;
 *   core_dumped; rusage times and max RSS; before_ready.
 * RESTARTING: delay_ns before the new process starts.
 * RECYCLED: the process was asked to stop (Shutdown) with no task in flight
 *   and its slot restarted at once; tasks_done (its Results), max_rss_kb
 *   (its current RSS, when max_rss_kb is set) and message say why. Not a
 *   crash, not a restart: no backoff, no intensity. EXITED follows.
 * EXITED also sets tasks_done: the Results that process delivered.
 * HUNG / FAILED / EXITED: message, a sentence for a human, e.g. "worker 0
 *   failed 5 times in a row before Ready; last: exec /bad/path: No such file
 *   or directory (exit status 127)". Never NULL (may be "").
 */
typedef struct ratchet_pool_event {
  ratchet_pool_event_type type;
  uint32_t worker_id;
  uint32_t generation;
  int pid;
  int exit_status;
  int term_signal;
  bool core_dumped;
  bool before_ready;
  uint64_t user_cpu_us;
  uint64_t sys_cpu_us;
  uint64_t max_rss_kb;
  uint64_t delay_ns;
  uint64_t tasks_done;
  const char *message;
} ratchet_pool_event;

typedef void (*ratchet_pool_outcome_cb)(ratchet_pool *p,
                                        const ratchet_pool_outcome *outcome);
typedef void (*ratchet_pool_event_cb)(ratchet_pool *p,
                                      const ratchet_pool_event *event);
/* One line of a worker's stderr, without its '\n' (NUL-terminated, len
 * bytes; a line longer than 4095 bytes arrives in pieces). Borrowed. */
typedef void (*ratchet_pool_stderr_cb)(ratchet_pool *p, uint32_t worker_id,
                                       const char *line, size_t len);
/* A Log frame of a worker: task_id 0 when it concerns no task, level as
 * ratchet.v1.LogLevel (1 debug .. 4 error; 0 or other values passed as
 * they came), text NUL-terminated. Everything borrowed until it returns. */
typedef void (*ratchet_pool_log_cb)(ratchet_pool *p, uint32_t worker_id,
                                    uint64_t task_id, int level,
                                    const char *text);
/* The pool is closed: every process it started is reaped, every handle is
 * closed, and its memory is freed. */
typedef void (*ratchet_pool_close_cb)(void *data);

/*
 * Pool options. Ranges are checked by ratchet_pool_new (-EINVAL).
 *
 * mode            SPAWN [default] or FORK.
 * size            workers at start [1; 1 .. RATCHET_POOL_MAX_SIZE].
 * argv            SPAWN: NULL-terminated, argv[0] the program (required);
 *                 copied by new.
 * env             SPAWN: NULL-terminated "NAME=value" list, copied; NULL
 *                 [default] inherits the caller's environment.
 * cwd             SPAWN: working directory, copied; NULL [default] inherits.
 * fork_main       FORK: run in the forked child with fds 0 and 1 connected
 *                 to the pool (2 to the stderr reader); its return value is
 *                 the exit status (the child ends with _exit). The child is a
 *                 copy of the caller: it must not touch the loop or the pool.
 * fork_arg        handed to fork_main.
 * worker          FORK: a ratchet_worker (handlers registered) that each
 *                 forked child serves with _exit(ratchet_worker_main(w));
 *                 takes precedence over fork_main (one of them is
 *                 required). Borrowed: it must outlive the pool and not be
 *                 changed after start (children copy it at fork). The child
 *                 has PR_SET_PDEATHSIG set and its parent checked before
 *                 ratchet_worker_main runs; create it with
 *                 o.parent_pid = getpid() to have the worker check too.
 *                 -EINVAL in SPAWN mode.
 * pipeline_depth  tasks in flight per worker [1; 1 .. 1024]; the worker's
 *                 Ready.max_in_flight lowers it when smaller.
 * max_frame_size  largest frame body read from a worker [0: 64 MiB].
 * restart         restart policy [PERMANENT].
 * restart_backoff delay before restart n of a slot, n counting the slot's
 *                 consecutive unhealthy ends [RATCHET_POOL_BACKOFF_INIT:
 *                 exponential 100 ms x2 capped at 10 s, equal jitter];
 *                 max_attempts and max_elapsed_ns are ignored. table_ns is
 *                 borrowed for the pool's life.
 * max_restarts, restart_period_ms
 *                 intensity: more than max_restarts restarts pool-wide within
 *                 restart_period_ms fails the pool [100 in 5000 ms: 20/s
 *                 sustained, twice a worker SIGKILLed every 100 ms;
 *                 max_restarts 0 disables; period 1 .. 86400000].
 * flap_limit      a slot whose process ends this many times in a row
 *                 without making progress - before Ready, or with a task in
 *                 flight and none finished - fails the pool [5; 0 disables].
 * start_timeout_ms Ready must come this soon after start, else the worker is
 *                 "hung" and killed [10000; 0 disables].
 * kill_grace_ms   between the escalation steps Cancel -> SIGTERM -> SIGKILL
 *                 [2000; 1 .. 3600000].
 * close_grace_ms  how long close lets in-flight tasks finish [5000; 0 ..
 *                 3600000]; Shutdown{grace_ms} carries it to the workers.
 * task_timeout_ms per-task limit from dispatch [0: none; 0 .. 3600000]. A
 *                 task with Task.deadline_unix_ms set gets that deadline
 *                 too (realtime clock, converted once at dispatch); the
 *                 earlier wins. At the deadline the pool sends Cancel and
 *                 dispatches nothing more to that worker; a Result within
 *                 kill_grace_ms is delivered as usual (typically
 *                 STATUS_CANCELLED/TIMEOUT) and the worker lives on.
 *                 Otherwise: HUNG event, SIGTERM to its group, SIGKILL
 *                 kill_grace_ms later; the overdue task is lost HUNG with
 *                 crash_count + 1 (it counts toward poison_threshold), other
 *                 tasks on that worker lost CLOSED; restart as for a crash.
 * ping_interval_ms, ping_timeout_ms
 *                 idle health checks [0, 0: off; 0 .. 3600000]. A ready
 *                 worker with no task in flight gets a Ping after
 *                 ping_interval_ms idle; its Pong must come within
 *                 ping_timeout_ms [0: = ping_interval_ms], or the worker is
 *                 hung: HUNG event, SIGTERM, SIGKILL, restart as for a
 *                 crash. Busy workers are not pinged (task_timeout_ms
 *                 watches them). A Pong updates ratchet_pool_worker_stats
 *                 (pongs, rss_kb). A timeout without an interval: -EINVAL.
 * recycle_after_tasks, recycle_jitter_tasks
 *                 retire a worker after recycle_after_tasks + U(0, jitter)
 *                 Results (drawn per process from the seeded generator, so
 *                 workers do not retire together) [0, 0: off; jitter
 *                 without recycle_after_tasks: -EINVAL]. A retiring worker
 *                 takes no new task; once it holds none it gets Shutdown
 *                 {close_grace_ms} and its slot starts a new process at
 *                 once (RECYCLED event). Never a crash, never counted by the
 *                 intensity limit or the backoff; no task is lost by it.
 * max_rss_kb      retire (as above) a worker whose resident set - read from
 *                 /proc/<pid>/statm after each Result and Pong, else the
 *                 Pong's rss_kb - is above this [0: off].
 * poison_threshold crash_count at which an outcome is flagged poison [3;
 *                 0 disables].
 * seed            seeds the jitter's random generator [0: from the clock].
 * on_outcome      required. on_event, on_stderr_line, on_log: optional
 *                 (NULL); a NULL on_stderr_line discards stderr, a NULL
 *                 on_log discards Log frames.
 *
 * Backpressure: when a worker's stdin queue reaches the transport's high
 * watermark (1 MiB), dispatch skips that worker (-EAGAIN when it is named)
 * until the queue drains to the low watermark (256 KiB).
 * data            for the owner: ratchet_pool_data, and the close callback.
 */
typedef struct ratchet_pool_options {
  ratchet_pool_mode mode;
  uint32_t size;
  const char *const *argv;
  const char *const *env;
  const char *cwd;
  int (*fork_main)(void *arg);
  void *fork_arg;
  struct ratchet_worker *worker;
  uint32_t pipeline_depth;
  size_t max_frame_size;
  ratchet_restart_policy restart;
  ratchet_backoff_options restart_backoff;
  uint32_t max_restarts;
  uint32_t restart_period_ms;
  uint32_t flap_limit;
  uint32_t start_timeout_ms;
  uint32_t kill_grace_ms;
  uint32_t close_grace_ms;
  uint32_t task_timeout_ms;
  uint32_t ping_interval_ms;
  uint32_t ping_timeout_ms;
  uint32_t recycle_after_tasks;
  uint32_t recycle_jitter_tasks;
  uint64_t max_rss_kb;
  uint32_t poison_threshold;
  uint64_t seed;
  ratchet_pool_outcome_cb on_outcome;
  ratchet_pool_event_cb on_event;
  ratchet_pool_stderr_cb on_stderr_line;
  ratchet_pool_log_cb on_log;
  void *data;
} ratchet_pool_options;

/* The default restart backoff. */
/* clang-format off */
#define RATCHET_POOL_BACKOFF_INIT {                                            \
    .kind = RATCHET_BACKOFF_EXPONENTIAL,                                       \
    .jitter = RATCHET_JITTER_EQUAL,                                            \
    .initial_ns = 100 * RATCHET_NS_PER_MS,                                     \
    .max_delay_ns = 10 * RATCHET_NS_PER_S,                                     \
    .multiplier = 2.0,                                                         \
    .increment_ns = 0,                                                         \
    .table_ns = NULL,                                                          \
    .table_len = 0,                                                            \
    .jitter_fraction = 0.0,                                                    \
    .max_attempts = 0,                                                         \
    .max_elapsed_ns = 0}

#define RATCHET_POOL_OPTIONS_INIT {                                            \
    .mode = RATCHET_POOL_SPAWN,                                                \
    .size = 1,                                                                 \
    .argv = NULL,                                                              \
    .env = NULL,                                                               \
    .cwd = NULL,                                                               \
    .fork_main = NULL,                                                         \
    .fork_arg = NULL,                                                          \
    .worker = NULL,                                                            \
    .pipeline_depth = 1,                                                       \
    .max_frame_size = 0,                                                       \
    .restart = RATCHET_RESTART_PERMANENT,                                      \
    .restart_backoff = RATCHET_POOL_BACKOFF_INIT,                              \
    .max_restarts = 100,                                                       \
    .restart_period_ms = 5000,                                                 \
    .flap_limit = 5,                                                           \
    .start_timeout_ms = 10000,                                                 \
    .kill_grace_ms = 2000,                                                     \
    .close_grace_ms = 5000,                                                    \
    .task_timeout_ms = 0,                                                      \
    .ping_interval_ms = 0,                                                     \
    .ping_timeout_ms = 0,                                                      \
    .recycle_after_tasks = 0,                                                  \
    .recycle_jitter_tasks = 0,                                                 \
    .max_rss_kb = 0,                                                           \
    .poison_threshold = 3,                                                     \
    .seed = 0,                                                                 \
    .on_outcome = NULL,                                                        \
    .on_event = NULL,                                                          \
    .on_stderr_line = NULL,                                                    \
    .on_log = NULL,                                                            \
    .data = NULL}
/* clang-format on */

/* Per-worker counters, and the pool's totals (ratchet_pool_stats). */
typedef struct ratchet_pool_worker_stats {
  uint32_t worker_id;
  int pid;             /* the current process, 0 when none */
  uint32_t generation; /* processes started in this slot */
  uint32_t in_flight;  /* tasks sent and not answered */
  uint32_t capacity;   /* tasks it may hold (0 when not ready) */
  bool ready;          /* accepting tasks */
  uint64_t tasks_done; /* Results received */
  uint64_t tasks_lost; /* lost outcomes */
  uint64_t exits;      /* processes reaped */
  uint64_t restarts;   /* restarts scheduled */
  uint64_t stderr_lines;
  uint64_t recycles;            /* processes retired by recycling */
  uint64_t hangs;               /* processes declared hung */
  uint64_t rss_kb;              /* last RSS seen (statm or Pong); 0 unknown */
  uint64_t pongs;               /* Pongs from the current process */
  uint64_t tasks_until_recycle; /* 0 when recycling by count is off */
} ratchet_pool_worker_stats;

typedef struct ratchet_pool_stats {
  uint32_t size;       /* target size */
  uint32_t ready;      /* workers accepting tasks */
  uint32_t in_flight;  /* tasks in flight, pool-wide */
  uint64_t dispatched; /* tasks accepted by dispatch */
  uint64_t tasks_done; /* Results */
  uint64_t tasks_lost; /* lost outcomes */
  uint64_t started;    /* processes started */
  uint64_t exits;      /* processes reaped */
  uint64_t restarts;   /* restarts scheduled */
  uint64_t recycled;   /* workers retired by recycling */
  uint64_t hung;       /* workers declared hung */
  uint64_t drains;     /* congested worker stdin queues that drained */
  bool failed;         /* the pool gave up */
} ratchet_pool_stats;

/*
 * Creates a pool on loop; no process starts before ratchet_pool_start.
 * o is copied (argv, env and cwd deeply).
 * Returns 0 and sets *out; -EINVAL (a NULL argument, no on_outcome, an
 * option out of range, SPAWN without argv, FORK without fork_main or
 * worker); -ENOMEM. On failure nothing is
 * allocated.
 */
RATCHET_API int ratchet_pool_new(struct uv_loop_s *loop,
                                 const ratchet_pool_options *o,
                                 ratchet_pool **out);

/*
 * Starts the workers. If SIGPIPE's disposition is the default (terminate),
 * start sets it to SIG_IGN, so that writing to a dead worker's stdin fails
 * with EPIPE instead of killing the program; a handler of the program's is
 * left alone. Returns 0 - the processes are starting; READY events
 * follow, or STARTING/EXITED/RESTARTING and perhaps FAILED - or -EALREADY
 * (called twice), -EPIPE (closing), uv_signal_start's error or a fork/pipe
 * error (-EAGAIN, -EMFILE, ...) for the first worker; nothing is left
 * running then. Start failures of later workers go through the supervisor.
 */
RATCHET_API int ratchet_pool_start(ratchet_pool *p);

/*
 * Sends task (borrowed for the call; its bytes are copied into the worker's
 * queue) to worker_id, or to the ready worker with the fewest tasks in
 * flight for RATCHET_POOL_ANY. crash_count is the crashes the task caused in
 * earlier dispatches (0 the first time: the owner copies it from a lost
 * outcome). On 0 the task is accepted and exactly one on_outcome follows,
 * from the loop (never from inside dispatch); *worker_out (may be NULL) is
 * the worker chosen.
 * Errors (no outcome follows; the pool is unchanged): -EAGAIN no ready
 * worker has room (or worker_id has none: full, retiring for recycling,
 * holding an overdue task, its stdin queue congested, or its stdin broken
 * because it is dying - a broken worker is skipped for RATCHET_POOL_ANY);
 * -ENOENT no such worker; -EEXIST a task with this id is already in flight
 * on that worker; -ESHUTDOWN the pool is closing or failed; -EINVAL task
 * NULL; -ENOMEM; RATCHET_EFRAME_TOO_BIG the task does not fit in a frame
 * the worker accepts.
 */
RATCHET_API int ratchet_pool_dispatch(ratchet_pool *p,
                                      const Ratchet__V1__Task *task,
                                      uint32_t crash_count, uint32_t worker_id,
                                      uint32_t *worker_out);

/* True when dispatch to worker_id (or RATCHET_POOL_ANY) would find room
 * now: a ready worker, not retiring, not congested, under its pipeline
 * depth. */
RATCHET_API bool ratchet_pool_has_room(const ratchet_pool *p,
                                       uint32_t worker_id);

/*
 * Cancels task_id wherever it is in flight: its worker is sent Cancel at
 * once, exactly as when the task's deadline passes; a Result within
 * kill_grace_ms ends the task as usual (typically STATUS_CANCELLED), else
 * the worker is declared hung and killed and the task is lost HUNG.
 * Returns 0; -ENOENT (not in flight); -EALREADY (already past its deadline
 * or cancelled); -EINVAL.
 */
RATCHET_API int ratchet_pool_cancel(ratchet_pool *p, uint64_t task_id);

/*
 * Changes the target size to size (1 .. RATCHET_POOL_MAX_SIZE). Growing
 * starts new slots at once; shrinking stops the highest-numbered slots:
 * they take no new tasks, get Shutdown{close_grace_ms} and are escalated
 * like close does; their in-flight tasks finish or are lost (CLOSED). Stopped
 * slots are not restarted. Each task in flight on a removed slot gets
 * exactly one outcome: its Result if the worker answers within
 * close_grace_ms (and the Cancel's kill_grace_ms), else lost CLOSED (no
 * crash). Returns 0, -EINVAL, -ESHUTDOWN, -ENOMEM.
 */
RATCHET_API int ratchet_pool_resize(ratchet_pool *p, uint32_t size);

/* Fills *st with the pool's totals. */
RATCHET_API void ratchet_pool_stats_get(const ratchet_pool *p,
                                        ratchet_pool_stats *st);

/* Fills *st for worker slot worker_id. 0 or -ENOENT. */
RATCHET_API int ratchet_pool_worker_stats_get(const ratchet_pool *p,
                                              uint32_t worker_id,
                                              ratchet_pool_worker_stats *st);

/* The options' data pointer. */
RATCHET_API void *ratchet_pool_data(const ratchet_pool *p);

/*
 * Closes the pool: refuses new tasks, cancels pending restarts, sends every
 * worker Shutdown{close_grace_ms}; once close_grace_ms has passed, sends
 * Cancel for the tasks still in flight, then after kill_grace_ms SIGTERM to
 * each remaining worker's process group, then after kill_grace_ms SIGKILL.
 * Tasks without a Result by the time their worker is reaped are lost
 * (CLOSED). cb (may be NULL) runs from the loop when every process the pool
 * started is reaped (and its group killed), every handle is closed and the
 * pool's memory is freed; data is the options' data. Outcomes and events may
 * come until then. Works on a pool that was never started, or failed.
 * Calling it twice is a bug; the second call is ignored.
 */
RATCHET_API void ratchet_pool_close(ratchet_pool *p, ratchet_pool_close_cb cb);

/* "starting", "ready", ... for logs; "unknown" otherwise. Static. */
RATCHET_API const char *ratchet_pool_event_name(ratchet_pool_event_type t);
/* "died", "protocol", "hung", "closed", "send"; "unknown" otherwise. */
RATCHET_API const char *
ratchet_pool_lost_reason_name(ratchet_pool_lost_reason r);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_POOL_H */
