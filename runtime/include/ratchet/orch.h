/*
 * ratchet/orch.h - the orchestrator: tasks in, exactly one outcome out.
 *
 * An orchestrator runs on a libuv loop over one or more process pools
 * (ratchet/pool.h). A program submits tasks - a kind, a payload and optional
 * policy components - and gets one completion callback per task with its
 * final outcome, whatever happens to workers on the way: retried on
 * failure, redispatched when its worker dies, failed fast by an open
 * circuit breaker, served from the result cache, coalesced with an
 * identical task, expired, cancelled, or shut down.
 *
 * Components and systems. A task is data: the policies it carries are
 * plain structs (ratchet_task_spec and the ratchet_policy_* structs below)
 * with no behaviour. The orchestrator runs *systems* over them at fixed
 * lifecycle points - on submit, before dispatch, on an attempt's success,
 * failure or loss, and on the final outcome - and every built-in policy is
 * one such system: delay, dedupe/debounce, cache, expiry, rate limit,
 * breaker, timeout, retry, produces, dead letter, accounting. Their state
 * (breaker windows, limiter buckets, the retry budget, dedupe windows,
 * in-flight cache keys) lives in the orchestrator, never in a task or a
 * worker. A program adds its own systems through the same interface
 * (ratchet_orch_add_system) and its own components (ratchet_component).
 *
 * Scheduling. Tasks wait in one FIFO per priority level (higher first);
 * delayed tasks and retries wait on a timer heap. Dispatch goes to the
 * least-loaded ready worker of a pool that serves the task's kind, or to a
 * pinned worker, or to the worker its affinity key is bound to (while that
 * worker lives). Each worker holds at most its pool's pipeline_depth tasks.
 * The queue is bounded: submit returns -EAGAIN when it is full, and
 * on_room tells the program when it has drained to half.
 *
 * A task that joins an identical one (cache single flight, dedupe) shares
 * its fate: its own expiry, deadline and timeout no longer apply. A pool
 * that fails (its workers keep dying: the pool's FAILED event) ends its
 * waiting tasks LOST with the pool's reason, and those that would go back
 * to it later (retries, redispatches); submits of its kinds then return
 * RATCHET_ENOPOOL.
 *
 * Delivery. Outcomes, events and dispatch happen on the loop, never inside
 * submit or cancel: a cache hit found at submit completes from the loop.
 * At-least-once: a task whose worker dies is dispatched again (its crash
 * count grows; at the pool's poison_threshold it ends POISON instead).
 *
 * Threads: an orchestrator belongs to its loop's thread; every function but
 * ratchet_orch_submit_async and ratchet_orch_stats must be called from it,
 * and every callback comes from it. ratchet_orch_submit_async may be called
 * from any thread (it hands the task to the loop through a uv_async_t).
 *
 * docs/orchestrator.md is the guide; ratchet/sync.h is a blocking layer for
 * programs that do not run libuv.
 */
#ifndef RATCHET_ORCH_H
#define RATCHET_ORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/accounting.h"
#include "ratchet/backoff.h"
#include "ratchet/breaker.h"
#include "ratchet/budget.h"
#include "ratchet/events.h"
#include "ratchet/export.h"
#include "ratchet/key.h"
#include "ratchet/pool.h"
#include "ratchet/ratelimit.h"
#include "ratchet/status.h"
#include "ratchet/tiered.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_orch ratchet_orch;
/* A task inside the orchestrator, as systems see it (borrowed for the
 * call). */
typedef struct ratchet_orch_task ratchet_orch_task;

/* ---------------------------------------------------------------- outcome */

/*
 * The final outcome of a task, handed to its completion callback. Borrowed
 * until the callback returns; copy what you keep.
 *
 * id, kind      the task
 * status        final status (ratchet/status.h); never NONE
 * output        the worker's Result.output (OK, and failures that set it),
 *               or the cached output for a cache hit; NULL/0 otherwise
 * error         a sentence for a human: the worker's error text, or why the
 *               orchestrator ended the task ("circuit breaker 'fetch' is
 *               open", "expired after 2.000 s in the queue", ...); "" for OK
 * stderr_data   the worker's Result.stderr (commands), NULL/0 otherwise
 * stdout_path, stderr_path  a command's output that was too big for memory
 *               and was spilled by the worker to a temporary file
 *               (Result.stdout_path / stderr_path); NULL when none. The
 *               file is deleted after the callback returns: read it, or
 *               rename(2) it away to keep it
 * exit_code, term_signal, core_dumped  from the last Result (commands)
 * attempts      attempts dispatched to a worker (0: never ran)
 * crashes       attempts whose worker died, hung or broke the protocol
 * cached        served from the result cache (no attempt made)
 * coalesced     shared the outcome of an identical task (related_id)
 * related_id    that task's id; for a child task, its parent's id; else 0
 * pool, worker  where the last attempt ran; -1 when none
 * submitted_ns, first_dispatch_ns, finished_ns
 *               the orchestrator's monotonic clock (0 when not applicable)
 * run_ns        the last attempt's time on the worker
 * user_cpu_us, sys_cpu_us, max_rss_kb  the last Result's usage (when given)
 */
typedef struct ratchet_orch_result {
  uint64_t id;
  const char *kind;
  ratchet_status status;
  const void *output;
  size_t output_len;
  const char *error;
  const void *stderr_data;
  size_t stderr_len;
  const char *stdout_path;
  const char *stderr_path;
  int exit_code;
  int term_signal;
  bool core_dumped;
  uint32_t attempts;
  uint32_t crashes;
  bool cached;
  bool coalesced;
  uint64_t related_id;
  int32_t pool;
  int32_t worker;
  uint64_t submitted_ns;
  uint64_t first_dispatch_ns;
  uint64_t finished_ns;
  uint64_t run_ns;
  uint64_t user_cpu_us;
  uint64_t sys_cpu_us;
  uint64_t max_rss_kb;
} ratchet_orch_result;

/* A completion callback: exactly once per accepted task, from the loop. data
 * is the spec's data. */
typedef void (*ratchet_orch_done_cb)(ratchet_orch *o,
                                     const ratchet_orch_result *r, void *data);

/* ------------------------------------------------------------- components */

/* Which attempt statuses a retry policy retries (a mask of
 * RATCHET_RETRY_ON_BIT(status)). Lost attempts (worker died) are not in
 * it: they are always dispatched again, up to the poison threshold. */
#define RATCHET_RETRY_ON_BIT(s) (1u << (s))
#define RATCHET_RETRY_ON_DEFAULT                                               \
  (RATCHET_RETRY_ON_BIT(RATCHET_STATUS_FAILED) |                               \
   RATCHET_RETRY_ON_BIT(RATCHET_STATUS_TIMEOUT) |                              \
   RATCHET_RETRY_ON_BIT(RATCHET_STATUS_INTERNAL_ERROR))

/*
 * Retry: up to max_attempts attempts in all (the first included; 1 means no
 * retry; attempts lost with their worker do not count) [3], spaced by backoff
 * (libratchet-resilience) [exponential, 100 ms x2, cap 30 s, full jitter], for
 * the statuses in retry_on [RATCHET_RETRY_ON_DEFAULT]. A retry also needs the
 * orchestrator's retry budget, when it has one, and must start before the
 * task's deadline.
 */
typedef struct ratchet_policy_retry {
  uint32_t max_attempts;
  ratchet_backoff_options backoff;
  uint32_t retry_on;
} ratchet_policy_retry;

/* clang-format off */
#define RATCHET_POLICY_RETRY_INIT {                                            \
    .max_attempts = 3,                                                         \
    .backoff = RATCHET_BACKOFF_OPTIONS_INIT,                                   \
    .retry_on = RATCHET_RETRY_ON_DEFAULT}
/* clang-format on */

/* What a task does when its breaker is open. */
typedef enum ratchet_breaker_mode {
  /* End at once with RATCHET_STATUS_REJECTED, without reaching a worker. */
  RATCHET_BREAKER_FAIL_FAST = 0,
  /* Wait (deferred, on the timer heap) until the breaker lets calls
   * through again, then go; its expiry and deadline still apply. */
  RATCHET_BREAKER_WAIT = 1
} ratchet_breaker_mode;

/*
 * Circuit breaker: the task's attempts are gated and recorded by the
 * breaker of `group` (copied) [NULL: one breaker per kind]. The breaker's
 * options are those given to ratchet_orch_breaker_config for the group, or
 * the orchestrator's breaker_defaults. Failures are attempts that end
 * FAILED, TIMEOUT or INTERNAL_ERROR, or lose their worker; CANCELLED and
 * the rest are ignored.
 */
typedef struct ratchet_policy_breaker {
  const char *group;
  ratchet_breaker_mode mode;
} ratchet_policy_breaker;

#define RATCHET_POLICY_BREAKER_INIT                                            \
  { .group = NULL, .mode = RATCHET_BREAKER_FAIL_FAST }

typedef enum ratchet_dedupe_mode {
  /* Dedupe: the first task with the key runs; a task with the same key
   * submitted within window_ns after it does not run and completes with
   * its outcome (coalesced). */
  RATCHET_DEDUPE_LEADING = 0,
  /* Debounce: a task waits window_ns of quiet; a newer task with the same
   * key submitted meanwhile replaces it and restarts the wait; the replaced
   * ones complete with the outcome of the one that runs (coalesced). */
  RATCHET_DEDUPE_TRAILING = 1
} ratchet_dedupe_mode;

/* Dedupe / debounce by key (bytes, copied) within window_ns (> 0). */
typedef struct ratchet_policy_dedupe {
  const void *key;
  size_t key_len;
  uint64_t window_ns;
  ratchet_dedupe_mode mode;
} ratchet_policy_dedupe;

/*
 * Result cache (the orchestrator's ratchet_tiered cache, which must be
 * set): a task whose key is in the cache completes OK at once with the
 * cached output (cached = true) without reaching a worker; a task whose
 * key is in flight already waits for that one and shares its outcome
 * (single flight; coalesced = true) when coalesce is set; an OK outcome is
 * stored with ttl_ms (0: the store's default). The key is `key` when
 * has_key is set, else derived from the kind, the payload and salt (NULL:
 * none) with ratchet/key.h.
 */
typedef struct ratchet_policy_cache {
  bool has_key;
  ratchet_cache_key key;
  const char *salt;
  uint64_t ttl_ms;
  bool coalesce;
} ratchet_policy_cache;

#define RATCHET_POLICY_CACHE_INIT                                              \
  {                                                                            \
    .has_key = false, .key = {0, 0}, .salt = NULL, .ttl_ms = 0,                \
    .coalesce = true                                                           \
  }

/*
 * Produces: the task's handler may add child tasks to its result
 * (ratchet_task_produce in ratchet/worker.h; Result.children on the wire).
 * When the task succeeds, each child (at most max_children [64; 1 ..
 * 4096]; the rest are dropped, and so is a child that cannot be
 * submitted: each such child is published as a REJECTED event of the
 * parent with the reason, and their number is in the parent's error text,
 * "N child tasks dropped ...", while its status stays OK) is
 * submitted with the parent's spec - priority, timeouts, rate group,
 * retry and breaker policies, metadata - but its own kind and payload and
 * without the parent's cache, dedupe, pin and affinity. A child completes
 * through on_child (with child_data) when set; otherwise its outcome is
 * only accounted and published. Children may produce in turn. The parent's
 * own callback fires when the parent ends, not waiting for its children.
 */
typedef struct ratchet_policy_produces {
  uint32_t max_children;
  ratchet_orch_done_cb on_child;
  void *child_data;
} ratchet_policy_produces;

#define RATCHET_POLICY_PRODUCES_INIT                                           \
  { .max_children = 64, .on_child = NULL, .child_data = NULL }

/* A user component: type (>= RATCHET_COMPONENT_USER) and bytes, copied at
 * submit; a system reads it with ratchet_orch_task_component. */
typedef struct ratchet_component {
  uint32_t type;
  const void *data;
  size_t size;
} ratchet_component;

#define RATCHET_COMPONENT_USER 1024u

/* The largest payload a task may carry (the pool's frame limit may be
 * lower: such a task ends LOST with the reason). */
#define RATCHET_ORCH_MAX_PAYLOAD (64u * 1024u * 1024u)

/* Priority levels: -8 (least urgent) .. 7; higher runs first. */
#define RATCHET_PRIORITY_MIN (-8)
#define RATCHET_PRIORITY_MAX 7

/* "No pin" for ratchet_task_spec.pin_pool / pin_worker. */
#define RATCHET_NO_PIN (-1)

/*
 * A task to submit. Everything is copied by submit; pointers may be freed
 * once it returns.
 *
 * kind          required, 1 .. 1024 bytes, NUL-terminated
 * payload, payload_len  bytes (0 .. RATCHET_ORCH_MAX_PAYLOAD)
 * priority      RATCHET_PRIORITY_MIN .. MAX [0]
 * delay_ns      not dispatched before submit + delay_ns [0]
 * expire_ns     must be dispatched within expire_ns of submit, else it ends
 *               EXPIRED [0: never]
 * deadline_ns   must end within deadline_ns of submit: no attempt starts
 *               after it, each attempt's deadline is capped to it, and it
 *               ends EXPIRED if it has not run by then [0: none]
 * timeout_ns    per attempt: the worker gets Task.deadline_unix_ms and the
 *               pool Cancels, then kills, an attempt that overruns (kill
 *               grace is the pool's kill_grace_ms); ends TIMEOUT [0: none]
 * pin_pool, pin_worker  run only on this worker of this pool (waits while
 *               it is busy or restarting) [RATCHET_NO_PIN]
 * affinity_key, affinity_len  tasks with the same key go to the same worker
 *               while it lives; then the key binds anew [NULL]
 * rate_group    take one permit of this group's rate limiter before each
 *               attempt, waiting on the timer heap when none is left; the
 *               group must be configured (ratchet_orch_rate_limit) [NULL]
 * retry, breaker, dedupe, cache, produces  optional policies [NULL]
 * components, n_components  user components [NULL, 0]
 * metadata      NULL-terminated key, value, key, value, ... strings sent
 *               in Task.metadata [NULL]
 * on_done, data the completion callback (required) and its argument
 */
typedef struct ratchet_task_spec {
  const char *kind;
  const void *payload;
  size_t payload_len;
  int priority;
  uint64_t delay_ns;
  uint64_t expire_ns;
  uint64_t deadline_ns;
  uint64_t timeout_ns;
  int32_t pin_pool;
  int32_t pin_worker;
  const void *affinity_key;
  size_t affinity_len;
  const char *rate_group;
  const ratchet_policy_retry *retry;
  const ratchet_policy_breaker *breaker;
  const ratchet_policy_dedupe *dedupe;
  const ratchet_policy_cache *cache;
  const ratchet_policy_produces *produces;
  const ratchet_component *components;
  size_t n_components;
  const char *const *metadata;
  ratchet_orch_done_cb on_done;
  void *data;
} ratchet_task_spec;

/* clang-format off */
#define RATCHET_TASK_SPEC_INIT {                                               \
    .kind = NULL, .payload = NULL, .payload_len = 0, .priority = 0,            \
    .delay_ns = 0, .expire_ns = 0, .deadline_ns = 0, .timeout_ns = 0,          \
    .pin_pool = RATCHET_NO_PIN, .pin_worker = RATCHET_NO_PIN,                  \
    .affinity_key = NULL, .affinity_len = 0, .rate_group = NULL,               \
    .retry = NULL, .breaker = NULL, .dedupe = NULL, .cache = NULL,             \
    .produces = NULL, .components = NULL, .n_components = 0,                   \
    .metadata = NULL, .on_done = NULL, .data = NULL}
/* clang-format on */

/* ---------------------------------------------------------------- systems */

/* Lifecycle points (a mask of RATCHET_AT_BIT(point) says which a system
 * runs at). */
typedef enum ratchet_lifecycle {
  RATCHET_AT_SUBMIT = 0,   /* accepted, before queueing: may finish/defer */
  RATCHET_AT_DISPATCH = 1, /* a worker has room for it: may finish/defer */
  RATCHET_AT_SUCCESS = 2,  /* an attempt answered OK */
  RATCHET_AT_FAILURE = 3,  /* an attempt answered another status: may retry */
  RATCHET_AT_LOST = 4,     /* an attempt's worker died, hung or broke */
  RATCHET_AT_FINAL = 5     /* the final outcome, before the callback */
} ratchet_lifecycle;

#define RATCHET_AT_BIT(p) (1u << (p))

/* What a system decides. PROCEED lets the next system run; the others stop
 * the chain at this point. */
typedef enum ratchet_verdict {
  RATCHET_PROCEED = 0,
  /* SUBMIT, DISPATCH: hold the task until `until_ns` (monotonic), then run
   * the DISPATCH systems again. */
  RATCHET_DEFER = 1,
  /* SUBMIT, DISPATCH, FAILURE: end the task now with `status` and
   * `reason`. */
  RATCHET_FINISH = 2,
  /* FAILURE: dispatch the task again after delay_ns. */
  RATCHET_RETRY = 3
} ratchet_verdict;

/* A decision; the orchestrator copies reason. */
typedef struct ratchet_decision {
  ratchet_verdict verdict;
  uint64_t until_ns;
  uint64_t delay_ns;
  ratchet_status status;
  const char *reason;
} ratchet_decision;

/*
 * What a system sees of an attempt (SUCCESS, FAILURE, LOST) or of the final
 * outcome (FINAL: result set, the others as for the last attempt).
 * status: the attempt's status (LOST: RATCHET_STATUS_LOST); result: the
 * worker's Result (NULL when lost); lost_reason and crash: for LOST; run_ns:
 * dispatch to answer; final: FINAL only.
 */
typedef struct ratchet_attempt {
  uint32_t attempt;
  ratchet_status status;
  const Ratchet__V1__Result *result;
  const char *lost_reason;
  bool crash;
  uint64_t run_ns;
  const ratchet_orch_result *final;
} ratchet_attempt;

/*
 * A system: `run` is called at every point in `points` for every task, in
 * the order systems were added (built-ins first), with the decision
 * preset to PROCEED. It must be quick (it runs on the loop) and keeps its
 * state in ctx, never in the task. a is NULL at SUBMIT and DISPATCH.
 * free_ctx (may be NULL) is called on ctx when the orchestrator is freed.
 */
typedef struct ratchet_system {
  const char *name;
  uint32_t points;
  void (*run)(void *ctx, ratchet_orch *o, ratchet_orch_task *t,
              ratchet_lifecycle at, const ratchet_attempt *a, uint64_t now_ns,
              ratchet_decision *d);
  void (*free_ctx)(void *ctx);
  void *ctx;
} ratchet_system;

/* A task's id. */
RATCHET_API uint64_t ratchet_orch_task_id(const ratchet_orch_task *t);
/* Its kind (NUL-terminated, valid for the orchestrator's life). */
RATCHET_API const char *ratchet_orch_task_kind(const ratchet_orch_task *t);
/* Its payload (borrowed for the call). */
RATCHET_API const void *ratchet_orch_task_payload(const ratchet_orch_task *t,
                                                  size_t *len);
/* Attempts dispatched so far. */
RATCHET_API uint32_t ratchet_orch_task_attempts(const ratchet_orch_task *t);
/* Its priority. */
RATCHET_API int ratchet_orch_task_priority(const ratchet_orch_task *t);
/* When it was submitted (monotonic ns). */
RATCHET_API uint64_t ratchet_orch_task_submitted_ns(const ratchet_orch_task *t);
/* The user component of this type, or NULL; *size (may be NULL) gets its
 * size. Borrowed for the call. */
RATCHET_API const void *ratchet_orch_task_component(const ratchet_orch_task *t,
                                                    uint32_t type,
                                                    size_t *size);

/* ------------------------------------------------------------ orchestrator */

/*
 * Options:
 * max_queued      tasks waiting (queued or delayed) before submit returns
 *                 -EAGAIN [1000000; 1 .. 2^32-1]
 * cache           the result cache for the cache policy (borrowed) [NULL]
 * breaker_defaults  options of breakers not configured per group [resilience
 *                 defaults but minimum_calls 10, window 20, consecutive 5,
 *                 open 30 s]; its listener is ignored (use events)
 * retry_budget    options of a retry budget shared by every task, or NULL
 *                 for none [NULL]
 * dead_letter_path  append final failures as JSON lines here (created
 *                 0644) [NULL: none]
 * dead_letter_on  mask of RATCHET_RETRY_ON_BIT(status) of final statuses
 *                 that are dead-lettered [every failure but CANCELLED and
 *                 SHUTDOWN]
 * on_dead_letter  also called for each (r borrowed) [NULL]
 * on_room         called (from the loop) once the queue has drained to half
 *                 after a submit returned -EAGAIN [NULL]
 * seed            jitter randomness [0: from the clock]
 * data            for the owner (ratchet_orch_data)
 */
typedef struct ratchet_orch_options {
  uint32_t max_queued;
  ratchet_tiered *cache;
  ratchet_breaker_options breaker_defaults;
  const ratchet_retry_budget_options *retry_budget;
  const char *dead_letter_path;
  uint32_t dead_letter_on;
  void (*on_dead_letter)(ratchet_orch *o, const ratchet_orch_result *r,
                         const char *payload, size_t payload_len, void *data);
  void (*on_room)(ratchet_orch *o, void *data);
  uint64_t seed;
  void *data;
} ratchet_orch_options;

#define RATCHET_DEAD_LETTER_DEFAULT                                            \
  (0x7ffeu & ~RATCHET_RETRY_ON_BIT(RATCHET_STATUS_OK) &                        \
   ~RATCHET_RETRY_ON_BIT(RATCHET_STATUS_CANCELLED) &                           \
   ~RATCHET_RETRY_ON_BIT(RATCHET_STATUS_SHUTDOWN))

/* clang-format off */
#define RATCHET_ORCH_BREAKER_DEFAULTS {                                        \
    .window = RATCHET_BREAKER_WINDOW_COUNT,                                    \
    .window_size = 20,                                                         \
    .bucket_ns = UINT64_C(1000000000),                                         \
    .minimum_calls = 10,                                                       \
    .failure_rate_threshold = 50.0,                                            \
    .slow_call_rate_threshold = 100.0,                                         \
    .slow_call_duration_ns = UINT64_C(60000000000),                            \
    .consecutive_failures = 5,                                                 \
    .open_duration_ns = UINT64_C(30000000000),                                 \
    .open_backoff_multiplier = 1.0,                                            \
    .max_open_duration_ns = UINT64_C(600000000000),                            \
    .permitted_calls_in_half_open = 3,                                         \
    .max_wait_in_half_open_ns = UINT64_C(60000000000),                         \
    .listener = NULL,                                                          \
    .listener_ctx = NULL}

#define RATCHET_ORCH_OPTIONS_INIT {                                            \
    .max_queued = 1000000,                                                     \
    .cache = NULL,                                                             \
    .breaker_defaults = RATCHET_ORCH_BREAKER_DEFAULTS,                         \
    .retry_budget = NULL,                                                      \
    .dead_letter_path = NULL,                                                  \
    .dead_letter_on = RATCHET_DEAD_LETTER_DEFAULT,                             \
    .on_dead_letter = NULL,                                                    \
    .on_room = NULL,                                                           \
    .seed = 0,                                                                 \
    .data = NULL}
/* clang-format on */

/*
 * Creates an orchestrator on loop (nothing runs before ratchet_orch_start).
 * Returns 0 and *out; -EINVAL (NULL argument, an option out of range; see
 * ratchet_orch_last_error); -ENOMEM; open's error for dead_letter_path. On
 * failure nothing is left allocated or open.
 */
RATCHET_API int ratchet_orch_new(struct uv_loop_s *loop,
                                 const ratchet_orch_options *o,
                                 ratchet_orch **out);

/*
 * Adds a pool (before start): po as for ratchet_pool_new, except that
 * on_outcome, on_event, on_stderr_line, on_log and data are the
 * orchestrator's (the program sees them as events). kinds: a
 * NULL-terminated list of the kinds it serves (copied), NULL for every
 * kind; a task goes to the first pool that serves its kind. Returns the
 * pool's index (>= 0), or -EINVAL, -EALREADY (started), -ENOMEM, or
 * ratchet_pool_new's error.
 */
RATCHET_API int ratchet_orch_add_pool(ratchet_orch *o,
                                      const ratchet_pool_options *po,
                                      const char *const *kinds);

/* The pool at index i (borrowed; for stats and resize), or NULL. */
RATCHET_API ratchet_pool *ratchet_orch_pool(ratchet_orch *o, uint32_t i);

/* Sets the breaker options of group (copied; before the group's first
 * task). 0, -EINVAL, -EEXIST (already in use), -ENOMEM. */
RATCHET_API int ratchet_orch_breaker_config(ratchet_orch *o, const char *group,
                                            const ratchet_breaker_options *bo);

/* Creates the rate limiter of group (copied). 0, -EINVAL, -EEXIST,
 * -ENOMEM. */
RATCHET_API int ratchet_orch_rate_limit(ratchet_orch *o, const char *group,
                                        const ratchet_ratelimit_options *ro);

/* Adds a system, run after the built-ins and those added before (before
 * start). s is copied. 0, -EINVAL (no run, no points), -EALREADY,
 * -ENOMEM. */
RATCHET_API int ratchet_orch_add_system(ratchet_orch *o,
                                        const ratchet_system *s);

/* The orchestrator's event bus (borrowed): subscribe to it. */
RATCHET_API ratchet_events *ratchet_orch_events(ratchet_orch *o);

/* Starts the pools. 0; -EINVAL (no pool); -EALREADY; a pool's start error:
 * the orchestrator cannot run then; close it (which stops the pools that
 * did start). Tasks may be submitted before start: they wait. */
RATCHET_API int ratchet_orch_start(ratchet_orch *o);

/*
 * Submits a task (copied). On 0 the task is accepted, *id (may be NULL)
 * is its id (never 0), and on_done will be called exactly once, from the
 * loop, never from inside submit. Errors (on_done is never called):
 * -EINVAL a bad spec (ratchet_orch_last_error names the field); -EAGAIN
 * the queue is full (see on_room); -ESHUTDOWN closing; RATCHET_ENOPOOL no
 * pool serves the kind; RATCHET_ENOGROUP its rate group is not configured;
 * -ENOMEM.
 */
RATCHET_API int ratchet_orch_submit(ratchet_orch *o,
                                    const ratchet_task_spec *spec,
                                    uint64_t *id);

/*
 * Submits from any thread: the spec is copied now and submitted on the
 * loop; a submit error there (a full queue, a bad spec) completes the task
 * with status LOST and the reason instead, so on_done always runs exactly
 * once (from the loop). Returns 0 and *id; -EINVAL (spec NULL or no
 * on_done); -ESHUTDOWN; -ENOMEM.
 */
RATCHET_API int ratchet_orch_submit_async(ratchet_orch *o,
                                          const ratchet_task_spec *spec,
                                          uint64_t *id);

/*
 * Cancels task id: waiting (queued, delayed, deferred) it ends CANCELLED at
 * once (from the loop); in flight, its worker is sent Cancel and the task
 * ends with the worker's answer (typically CANCELLED), or lost; no retry
 * follows either way. A task coalesced with another is detached and ends
 * CANCELLED; the other runs on. Cancelling a task that others joined lets
 * the first of them take its place. Returns 0, -ENOENT (no such task, it
 * has ended, or it was handed over by submit_async and the loop has not
 * taken it yet), -EALREADY (cancel already requested).
 */
RATCHET_API int ratchet_orch_cancel(ratchet_orch *o, uint64_t id);

/* Calls cb (from the loop) once no task is waiting or in flight - at once
 * (next loop turn) if none is. One drain at a time: -EBUSY. 0 otherwise. */
RATCHET_API int ratchet_orch_drain(ratchet_orch *o,
                                   void (*cb)(ratchet_orch *o, void *arg),
                                   void *arg);

/*
 * Closes: refuses new tasks; every waiting task ends SHUTDOWN; tasks in
 * flight get the pools' close grace to finish (their Result ends them as
 * usual) and end SHUTDOWN if their worker is stopped first; no retries are
 * scheduled any more. cb (may be NULL) runs from the loop once every
 * outcome has been delivered, the pools are closed and the memory is
 * freed; data is the options' data. Calling it twice is a bug (ignored).
 */
RATCHET_API void ratchet_orch_close(ratchet_orch *o, void (*cb)(void *data));

/* A snapshot of the accounting (ratchet/accounting.h) with the current
 * gauges: 0 and *out (ratchet_stats_free); -ENOMEM. Any thread (the
 * gauges are then a moment old). */
RATCHET_API int ratchet_orch_stats(ratchet_orch *o, ratchet_stats **out);

/* The last -EINVAL's explanation ("spec.kind is empty", ...); "" if none.
 * Loop thread; valid until the next call. */
RATCHET_API const char *ratchet_orch_last_error(const ratchet_orch *o);

/* The options' data. */
RATCHET_API void *ratchet_orch_data(const ratchet_orch *o);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_ORCH_H */
