/*
 * orch_internal.h - the orchestrator's private types, shared by orch.c (the
 * task lifecycle, queues and dispatch), orch_systems.c (the built-in
 * policies as systems), orch_api.c (configuration, async submit, stats) and
 * orch_deadletter.c.
 *
 * A task is one allocation: struct ratchet_orch_task with its payload
 * after it. Policies a task does not carry cost nothing: they live in an
 * optional second allocation (task_ext), so a plain task stays small
 * (docs/benchmarks.md measures it).
 */
#ifndef RATCHET_ORCH_INTERNAL_H
#define RATCHET_ORCH_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "acct.h"
#include "containers.h"
#include "ratchet/orch.h"
#include "ratchet/rng.h"

#define N_PRIO         (RATCHET_PRIORITY_MAX - RATCHET_PRIORITY_MIN + 1)
#define MAX_KIND       1024u
#define MAX_GROUP      1024u
#define MAX_ERROR_TEXT 1024u

typedef struct orch_pool orch_pool;
typedef struct task_ext task_ext;
typedef struct ratchet_orch_task task;

/* Where a task is. */
typedef enum task_state {
  TS_NEW,       /* being submitted */
  TS_QUEUED,    /* in its pool's priority FIFO */
  TS_PINNED,    /* in a worker's wait list (pin or affinity) */
  TS_TIMED,     /* on the timer heap (delay, retry, deferral, debounce) */
  TS_FLIGHT,    /* sent to a worker */
  TS_FOLLOWER,  /* waiting for an identical task's outcome */
  TS_FINISHING, /* final outcome decided, callback pending */
  TS_DONE
} task_state;

/* A doubly-linked FIFO of tasks. */
typedef struct task_list {
  task *head, *tail;
  size_t len;
} task_list;

struct ratchet_orch_task {
  uint64_t id;
  ratchet__kind *kind;
  task *prev, *next;        /* in a task_list */
  ratchet__heap_node timer; /* on the timer heap (TS_TIMED) */
  task_ext *ext;            /* optional policies; NULL for a plain task */
  ratchet_orch_done_cb on_done;
  void *data;
  uint64_t submitted_ns, first_dispatch_ns, dispatched_ns;
  uint32_t attempts, crashes;
  uint32_t payload_len;
  uint16_t pool; /* the pool that serves its kind */
  int8_t priority;
  uint8_t state;
  int32_t worker; /* in flight on / last ran on; -1 none */
  bool cancel_requested;
  bool retry_front;    /* back from a deferral: to the front of its FIFO */
  bool breaker_permit; /* holds a breaker permit for the current attempt */
  unsigned char payload[];
};

/* The final outcome under construction (owned copies). */
typedef struct final_out {
  ratchet_status status;
  char *error;  /* owned, or NULL */
  void *output; /* owned, or NULL */
  size_t output_len;
  void *stderr_data; /* owned, or NULL */
  size_t stderr_len;
  /* Spilled output files (owned names; the files are deleted when the
   * final_out is cleared). */
  char *stdout_path, *stderr_path;
  int exit_code, term_signal;
  bool core_dumped, cached;
  uint64_t run_ns, user_cpu_us, sys_cpu_us, max_rss_kb;
} final_out;

typedef struct breaker_ref breaker_ref;
typedef struct dedupe_entry dedupe_entry;

struct task_ext {
  /* Times, absolute monotonic ns; 0 none. */
  uint64_t not_before, expire_at, deadline_at, timeout_ns;
  ratchet__heap_node expiry; /* on the expiry heap while waiting */
  task *owner;               /* the task, for the expiry timer */
  int32_t pin_pool, pin_worker;
  void *affinity;
  size_t affinity_len;
  ratchet_ratelimit *limiter;
  char *rate_group;
  bool has_retry, has_breaker, has_dedupe, has_cache, has_produces;
  ratchet_policy_retry retry;
  uint64_t prev_delay_ns;
  ratchet_breaker_mode breaker_mode;
  breaker_ref *breaker;
  ratchet_policy_dedupe dedupe; /* key copied */
  dedupe_entry *dedupe_entry;
  ratchet_policy_cache cache; /* salt copied */
  ratchet_cache_key cache_key;
  bool cache_key_set;
  bool cache_leader; /* registered in the in-flight cache map */
  ratchet_policy_produces produces;
  uint32_t children_dropped; /* over max_children or refused */
  uint32_t lost_attempts;    /* attempts lost with their worker */
  uint64_t parent_id;
  ratchet_component *components; /* data copied after the array */
  size_t n_components;
  char **metadata; /* NULL-terminated pairs, owned */
  size_t n_metadata;
  /* Coalescing: a leader's followers (singly linked through follower_next)
   * and a follower's leader. */
  task *followers, *follower_next, *leader;
  uint64_t leader_id; /* the leader's id, kept for the result */
  /* The last failure, for the final outcome when the task later ends by
   * expiry or shutdown. */
  final_out last;
  bool has_last;
};

/* A breaker of a group (or of a kind). */
struct breaker_ref {
  ratchet_orch *o;
  ratchet_breaker *b;
  char name[]; /* the group */
};

/* One pool and its queues. */
struct orch_pool {
  ratchet_orch *o;
  uint32_t index;
  ratchet_pool *pool;
  char **kinds;           /* NULL-terminated, owned; NULL: every kind */
  task_list prio[N_PRIO]; /* index: priority - RATCHET_PRIORITY_MIN */
  size_t queued;
  task_list *pinned; /* per worker slot: tasks waiting for that worker */
  uint32_t n_pinned_slots;
  size_t pinned_total;
  bool closed;
  bool failed; /* the pool gave up: its tasks end LOST */
  char fail_reason[512];
};

/* A task handed over by submit_async. */
typedef struct async_item {
  struct async_item *next;
  uint64_t id;
  ratchet_task_spec spec; /* pointers into the copies below */
  void *blob;             /* every copied byte */
} async_item;

/* A registered system. */
typedef struct sys_entry {
  ratchet_system s;
  char *name;
} sys_entry;

struct ratchet_orch {
  uv_loop_t *loop;
  ratchet_orch_options opt;
  char *dead_letter_path;
  int dead_letter_fd;
  orch_pool **pools;
  uint32_t n_pools;
  bool started, closing, close_started;
  void (*close_cb)(void *data);
  unsigned open_handles, open_pools;
  /* Scheduling. */
  ratchet__idmap tasks;   /* id -> live task */
  ratchet__heap timers;   /* TS_TIMED tasks */
  ratchet__heap expiries; /* waiting tasks with an expiry/deadline */
  uv_timer_t timer;
  uint64_t timer_due; /* when the uv timer is armed for; 0 idle */
  uv_idle_t kick;
  bool kick_active;
  uv_async_t async;
  pthread_mutex_t async_lock;
  async_item *async_head, *async_tail;
  bool async_closed;
  atomic_uint_fast64_t next_id;
  task_list finishing; /* final outcomes to deliver from the loop */
  size_t live;         /* tasks accepted and not yet delivered */
  size_t waiting;      /* queued + pinned + timed (bounded) */
  size_t timed;
  size_t in_flight;
  bool want_room;
  void (*drain_cb)(ratchet_orch *o, void *arg);
  void *drain_arg;
  /* Policies' state. */
  ratchet__acct *acct;
  ratchet_events *events;
  ratchet__strmap *breakers;       /* group -> breaker_ref */
  ratchet__strmap *breaker_cfg;    /* group -> ratchet_breaker_options copy */
  ratchet__strmap *limiters;       /* group -> ratchet_ratelimit */
  ratchet__strmap *affinity;       /* key -> (pool << 16 | worker) + 1 */
  ratchet__strmap *dedupe;         /* key -> dedupe_entry */
  ratchet__strmap *cache_inflight; /* 16-byte key -> leader task */
  ratchet_retry_budget *budget;
  ratchet_key_builder *keyb;
  ratchet_rng rng;
  sys_entry *systems;
  size_t n_systems;
  size_t n_builtin;
  char last_error[256];
  /* Gauges for ratchet_orch_stats from other threads, refreshed by the
   * loop after each batch of work. */
  atomic_uint_fast64_t g_queued, g_delayed, g_in_flight, g_ready;
  uv_thread_t loop_thread;
  size_t dedupe_sweep_at; /* sweep expired dedupe entries past this size */
  bool in_api;            /* inside submit/cancel: finals wait for the loop */
};

/* orch.c: lists, waiting, dispatch, the final outcome. */
void ratchet__list_push_back(task_list *l, task *t);
void ratchet__list_push_front(task_list *l, task *t);
void ratchet__list_remove(task_list *l, task *t);
char *ratchet__dup_str(const char *s);
void *ratchet__dup_bytes(const void *p, size_t n);
void ratchet__task_free(task *t);
void ratchet__orch_arm_timer(ratchet_orch *o);
void ratchet__orch_timer_cb(uv_timer_t *h);
void ratchet__orch_kick_cb(uv_idle_t *h);
void ratchet__orch_expiry_track(ratchet_orch *o, task *t);
void ratchet__orch_expiry_untrack(ratchet_orch *o, task *t);
/* Into its pool's FIFO (front: ahead of the rest) or a worker's wait list. */
void ratchet__orch_enqueue(ratchet_orch *o, task *t, bool front);
/* Onto the timer heap until due; then enqueued (front as given). */
int ratchet__orch_schedule(ratchet_orch *o, task *t, uint64_t due, bool front);
/* Runs the FINAL systems, releases followers, calls back and frees t. */
void ratchet__orch_deliver(ratchet_orch *o, task *t, final_out *f);
/* Unix-epoch milliseconds. */
uint64_t ratchet__wall_ms(void);
/* The worker slot a task must wait for (pin, or its affinity binding), or
 * -1 for any. */
int32_t ratchet__orch_bound_worker(ratchet_orch *o, task *t);
/* Makes room for worker w's wait list: 0 or -ENOMEM. */
int ratchet__orch_pinned_reserve(orch_pool *op, uint32_t w);
/* Refreshes the gauges ratchet_orch_stats reads from other threads. */
void ratchet__orch_gauges(ratchet_orch *o);
/* Out of wherever it waits (queue, wait list, timer heap, expiry heap). */
void ratchet__orch_unwait(ratchet_orch *o, task *t);
/* Ends t with a status and reason of the orchestrator's (keeping the last
 * failure's output); t must not be waiting anywhere. */
void ratchet__orch_finish_with(ratchet_orch *o, task *t, ratchet_status st,
                               const char *reason);
ratchet_decision ratchet__orch_run_systems(ratchet_orch *o, task *t,
                                           ratchet_lifecycle at,
                                           const ratchet_attempt *a,
                                           uint64_t now, char *buf, size_t cap);
task_ext *ratchet__orch_ext(ratchet_orch *o, task *t);
void ratchet__orch_kick(ratchet_orch *o);
void ratchet__orch_publish_task(ratchet_orch *o, ratchet_event_type type,
                                const task *t, ratchet_status status,
                                uint64_t delay_ns, uint64_t duration_ns,
                                const char *group, const char *message);
int ratchet__orch_submit_loop(ratchet_orch *o, const ratchet_task_spec *spec,
                              uint64_t id, uint64_t parent_id);
void ratchet__orch_finish(ratchet_orch *o, task *t, final_out *f);
/* Frees f's buffers and deletes its spilled files. */
void ratchet__final_clear(final_out *f);
/* A second name (hard link) for a spilled file, so that a copy of an
 * outcome can be cleared independently; NULL when none or on failure. */
char *ratchet__spill_link(const char *path);
uint64_t ratchet__orch_random(ratchet_orch *o);
void ratchet__orch_error(ratchet_orch *o, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The arguments of a system's run function (ratchet_system.run). */
#define RATCHET__RUN_ARGS                                                      \
  void *ctx, ratchet_orch *o, ratchet_orch_task *t, ratchet_lifecycle at,      \
      const ratchet_attempt *a, uint64_t now, ratchet_decision *d

/* orch_coalesce.c: followers, leaders, dedupe and debounce. */
void ratchet__orch_make_follower(ratchet_orch *o, task *t, task *leader);
void ratchet__sys_dedupe(RATCHET__RUN_ARGS);

/* orch_systems.c: the built-in systems, in the order they run. */
extern const ratchet_system ratchet__builtin_systems[];
extern const size_t ratchet__n_builtin_systems;
/* The breaker of group (created from its config or the defaults), or NULL
 * on -ENOMEM. */
breaker_ref *ratchet__orch_breaker(ratchet_orch *o, const char *group);
/* Cache hits found at submit: the cached Result's fields into f. */
int ratchet__cache_value_decode(const void *v, size_t len, final_out *f);
/* Called when a leader's outcome is final: followers complete with it. */
void ratchet__orch_release_followers(ratchet_orch *o, task *leader,
                                     const final_out *f);
/* Forget a task in the dedupe / cache-in-flight maps (cancel, final). */
void ratchet__orch_forget_keys(ratchet_orch *o, task *t, const final_out *f);
/* A follower leaves its leader's list (cancel). */
void ratchet__orch_detach_follower(ratchet_orch *o, task *t);
/* orch_api.c / orch_submit.c */
void ratchet__orch_async_drain(ratchet_orch *o);
void ratchet__orch_dedupe_free_all(ratchet_orch *o);

/* orch_outcome.c: the pools' callbacks. */
void ratchet__orch_pool_outcome(ratchet_pool *p,
                                const ratchet_pool_outcome *oc);
void ratchet__orch_pool_event(ratchet_pool *p, const ratchet_pool_event *pe);
void ratchet__orch_pool_stderr(ratchet_pool *p, uint32_t worker_id,
                               const char *line, size_t len);
void ratchet__orch_pool_log(ratchet_pool *p, uint32_t worker_id,
                            uint64_t task_id, int level, const char *text);

/* orch_deadletter.c */
int ratchet__deadletter_open(ratchet_orch *o, const char *path);
void ratchet__deadletter_write(ratchet_orch *o, const task *t,
                               const ratchet_orch_result *r);

#endif
