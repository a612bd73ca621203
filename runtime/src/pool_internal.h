/*
 * pool_internal.h - what the pool's files (pool.c, pool_proc.c,
 * pool_frames.c, process.c and supervisor.c) share. Not installed; every
 * symbol here is ratchet__ and hidden.
 */
#ifndef RATCHET_POOL_INTERNAL_H
#define RATCHET_POOL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <uv.h>

#include "ratchet/codec.h"
#include "ratchet/pool.h"
#include "ratchet/rng.h"
#include "ratchet/transport.h"

/* ---- process.c: starting a worker process ------------------------------ */

typedef struct ratchet__proc_spec {
  ratchet_pool_mode mode;
  char *const *argv;           /* SPAWN */
  char *const *env;            /* SPAWN; NULL inherits */
  const char *cwd;             /* SPAWN; NULL inherits */
  int (*fork_main)(void *arg); /* FORK */
  void *fork_arg;
  struct ratchet_worker *worker; /* FORK: served instead of fork_main */
  /* FORK: the pool's own descriptors (other workers' pipes), closed in the
   * child so that it holds no end of a sibling's pipes. */
  const int *close_fds;
  size_t n_close_fds;
} ratchet__proc_spec;

/*
 * Forks a worker: in the child, default signal dispositions and an empty
 * mask, its own process group (setpgid(0, 0)), PR_SET_PDEATHSIG(SIGKILL),
 * fds 0/1/2 on the pipes; then execve (SPAWN), or in FORK mode
 * _exit(ratchet_worker_main(worker)) when a worker is given, else
 * _exit(fork_main(arg)). On 0: *pid, fds[0] the write end of its stdin, fds[1]
 * the read end of its stdout, fds[2] the read end of its stderr (all
 * O_CLOEXEC), and *exec_errno the errno of a failed chdir/exec (0 when it
 * succeeded; the child then exits 127). On failure (-errno of pipe2/fork)
 * nothing is left.
 */
int ratchet__proc_start(const ratchet__proc_spec *spec, pid_t *pid, int fds[3],
                        int *exec_errno);

/* ---- supervisor.c: restart decisions ---------------------------------- */

/* How a worker's process ended, as the restart policy sees it. */
typedef enum ratchet__end_kind {
  RATCHET__END_REQUESTED = 0, /* the pool stopped it (close, resize) */
  RATCHET__END_CLEAN = 1,     /* it exited with status 0 on its own */
  RATCHET__END_ABNORMAL = 2,  /* any other status, a signal, a protocol
                                 error, a hang */
  RATCHET__END_KINDS = 3
} ratchet__end_kind;

typedef enum ratchet__action {
  RATCHET__ACT_STOP = 0,   /* leave the slot empty */
  RATCHET__ACT_RESTART = 1 /* start a new process after the backoff */
} ratchet__action;

/* next[policy][end] - the restart policy as a table. */
ratchet__action ratchet__restart_action(ratchet_restart_policy policy,
                                        ratchet__end_kind end);

/*
 * The intensity limit: at most max restarts within period_ns. The ring holds
 * the times of the last max restarts. note() records a restart at now_ns and
 * returns true if it is one too many (it is then not recorded).
 */
typedef struct ratchet__intensity {
  uint64_t *ring;
  uint32_t max;
  uint32_t count;
  uint32_t head;
  uint64_t period_ns;
} ratchet__intensity;

int ratchet__intensity_init(ratchet__intensity *in, uint32_t max,
                            uint64_t period_ns);
void ratchet__intensity_free(ratchet__intensity *in);
bool ratchet__intensity_note(ratchet__intensity *in, uint64_t now_ns);

/* ---- the pool's state, shared by pool.c, pool_proc.c, pool_frames.c ---- */

#define LINE_MAX_BYTES 4096
#define TEXT_MAX       512

typedef struct proc proc;
typedef struct slot slot;

typedef enum proc_state {
  P_STARTING, /* Hello sent, waiting for Ready */
  P_READY,    /* serving tasks */
  P_STOPPING, /* the pool asked it to end (Shutdown sent) */
  P_DEAD      /* its stdout ended or it broke the protocol; or it exited */
} proc_state;

typedef enum timer_use {
  T_NONE,
  T_START,    /* Ready must arrive */
  T_TASK,     /* the earliest task deadline (or its Cancel's grace) */
  T_PING,     /* idle: time to send the next Ping */
  T_PONG,     /* a Ping is out: its Pong must arrive */
  T_ESCALATE, /* next kill_stage step */
  T_LINGER    /* finalised; waiting for the end of stderr */
} timer_use;

typedef struct inflight {
  uint64_t id;
  uint32_t crashes;
  uint64_t deadline_ms; /* loop time (uv_now); 0 for none */
  bool overdue;         /* past its deadline, Cancel sent */
} inflight;

struct proc {
  ratchet_pool *pool;
  slot *slot; /* the slot it was started for; slots outlive procs */
  proc *next; /* the pool's list of live procs */
  pid_t pid;
  uint32_t generation;
  proc_state state;
  uv_pipe_t in, out, err;
  uv_timer_t timer;
  timer_use timer_use;
  ratchet_uv_transport *t;
  unsigned handles; /* close callbacks still to come */
  bool t_open, err_open, timer_open;
  bool reaped, eof, finalized, stop_requested, ready_seen, protocol_error;
  bool hung;           /* a deadline, Ready or Pong did not come in time */
  bool retiring;       /* reached its recycle point: takes no new task */
  uint64_t recycle_at; /* tasks_done that makes it retire; 0 never */
  uint32_t n_overdue;  /* in-flight tasks past their deadline */
  uint64_t ping_seq;   /* the last Ping's seq */
  bool ping_out;       /* a Ping awaits its Pong */
  uint64_t ping_sent_ms, idle_since_ms; /* loop time */
  uint64_t rss_kb, pong_rss_kb, pongs;
  char retire_why[160];
  int kill_stage; /* 0 none, 1 Cancel sent, 2 SIGTERM sent, 3 SIGKILL sent */
  int exit_status, term_signal;
  bool core_dumped;
  struct rusage ru;
  char cause[TEXT_MAX]; /* the first thing that went wrong, or "" */
  uint32_t capacity;
  inflight *inflight;
  uint32_t n_inflight;
  uint64_t tasks_done;
  char line[LINE_MAX_BYTES];
  size_t line_len;
};

struct slot {
  ratchet_pool *pool;
  uint32_t id;
  proc *cur; /* the process serving this slot, NULL when none */
  uv_timer_t restart_timer;
  bool restart_pending;
  bool removed; /* beyond the target size */
  uint32_t generation;
  uint32_t flaps; /* consecutive ends without progress */
  uint64_t prev_delay_ns;
  uint64_t tasks_done, tasks_lost, exits, restarts, stderr_lines;
  uint64_t recycles, hangs;
};

typedef enum pool_state { S_NEW, S_RUNNING, S_FAILED } pool_state;

struct ratchet_pool {
  uv_loop_t *loop;
  ratchet_pool_options o;
  char **argv, **env, *cwd; /* deep copies */
  pool_state state;
  bool closing;
  ratchet_pool_close_cb close_cb;
  uv_signal_t sigchld;
  int sig_state; /* 0 open, 1 closing, 2 closed */
  slot **slots;
  uint32_t n_slots; /* allocated, some may be removed */
  uint32_t size;    /* target */
  uint32_t rr;      /* where the least-loaded search starts */
  proc *procs;
  unsigned n_procs;
  unsigned timers_open; /* slot restart timers not yet closed */
  ratchet__intensity intensity;
  ratchet_rng rng;
  uint32_t ping_timeout_ms; /* effective: o.ping_timeout_ms or the interval */
  ratchet_pool_stats st;
  char readbuf[65536];
};

/* ---- pool.c: helpers, failing and finishing the pool ------------------- */

void ratchet__pool_fmt(char *dst, size_t cap, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
/* Records the first thing that went wrong with p; later causes are dropped. */
void ratchet__pool_set_cause(proc *p, const char *f, ...)
    __attribute__((format(printf, 2, 3)));
void ratchet__pool_emit(ratchet_pool *pool, const ratchet_pool_event *ev);
void ratchet__pool_event_init(ratchet_pool_event *ev,
                              ratchet_pool_event_type type, const proc *p);
/* Stops every worker and reports FAILED; the pool serves no more tasks. */
void ratchet__pool_fail(ratchet_pool *pool, const char *msg);
/* Frees a closing pool and calls its close callback once every handle is
 * closed. */
void ratchet__pool_maybe_finish(ratchet_pool *pool);

/* ---- pool_proc.c: a worker process's lifecycle ------------------------- */

void ratchet__pool_proc_arm(proc *p, timer_use use, uint64_t ms);
void ratchet__pool_proc_schedule(proc *p);
void ratchet__pool_proc_stop(proc *p, uint64_t grace_ms);
void ratchet__pool_proc_release(proc *p);
void ratchet__pool_proc_close_transport(proc *p);
void ratchet__pool_sigchld_cb(uv_signal_t *h, int signum);
int ratchet__pool_slot_spawn(slot *s);
void ratchet__pool_slot_start(slot *s);

/* ---- pool_frames.c: frames, outcomes, the end of a process ------------- */

void ratchet__pool_on_frame(ratchet_uv_transport *t,
                            const Ratchet__V1__Frame *f);
void ratchet__pool_on_end(ratchet_uv_transport *t, int err);
void ratchet__pool_on_drain(ratchet_uv_transport *t);
void ratchet__pool_proc_try_finalize(proc *p);
void ratchet__pool_slot_start_failed(slot *s, int err);

#endif
