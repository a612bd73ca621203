/*
 * pool_internal.h - what pool.c, process.c and supervisor.c share. Not
 * installed; every symbol here is ratchet__ and hidden.
 */
#ifndef RATCHET_POOL_INTERNAL_H
#define RATCHET_POOL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ratchet/pool.h"

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

#endif
