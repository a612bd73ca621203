/*
 * process.c - starting one worker process: pipes, fork, and the child's
 * set-up before it execs (SPAWN) or runs the program's own worker function
 * (FORK): its fork_main, or ratchet_worker_main on a handler registry.
 *
 * libuv's uv_spawn offers UV_PROCESS_DETACHED (setsid in the child, so a new
 * session and process group), but no hook to run code in the child, so it
 * cannot set PR_SET_PDEATHSIG, and it cannot fork without exec at all. Both
 * modes therefore share this fork-based path, and the pool reaps its own pids
 * (pool_proc.c). It follows uv_spawn's discipline: every signal is blocked
 * around fork() so that no handler of the parent (libuv's included, which would
 * write into the parent's signal pipe) runs in the child; the child resets
 * every disposition to SIG_DFL before unblocking. Between fork and exec the
 * child calls only async-signal-safe functions. A failed exec is reported
 * through an O_CLOEXEC pipe (the parent reads it until EOF, which exec
 * produces), as uv_spawn does, so the pool can name the cause.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#include "pool_internal.h"
#include "ratchet/worker.h"

extern char **environ;

enum { EXIT_EXEC_FAILED = 127, EXIT_SETUP_FAILED = 126 };

static void close_pair(int p[2]) {
  if (p[0] >= 0)
    close(p[0]);
  if (p[1] >= 0)
    close(p[1]);
  p[0] = p[1] = -1;
}

static void report_and_exit(int errfd, int err) {
  ssize_t n;
  do
    n = write(errfd, &err, sizeof err);
  while (n < 0 && errno == EINTR);
  _exit(EXIT_EXEC_FAILED);
}

/* In the child: move src to target, keeping it clear of 0..2 first so that
 * an earlier dup2 cannot clobber a later source. */
static int child_fd_high(int fd) {
  return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

static void child_main(const ratchet__proc_spec *spec, pid_t parent,
                       int child_fds[3], int parent_fds[3], int errfd) {
  /* Default dispositions first, then unblock: no inherited handler runs. */
  struct sigaction sa;
  sa.sa_handler = SIG_DFL;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP)
      (void)sigaction(s, &sa, NULL);
  sigset_t none;
  sigemptyset(&none);
  (void)sigprocmask(SIG_SETMASK, &none, NULL);

  if (setpgid(0, 0) != 0)
    report_and_exit(errfd, errno);
  /* Die with the thread that forked us; if it is already gone, go now. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    report_and_exit(errfd, errno);
  if (getppid() != parent)
    _exit(EXIT_SETUP_FAILED);

  int high[3];
  for (int i = 0; i < 3; i++) {
    high[i] = child_fd_high(child_fds[i]);
    if (high[i] < 0)
      report_and_exit(errfd, errno);
  }
  for (int i = 0; i < 3; i++)
    if (dup2(high[i], i) < 0) /* dup2 clears O_CLOEXEC on the new fd */
      report_and_exit(errfd, errno);

  if (spec->mode == RATCHET_POOL_FORK) {
    /* No exec will close the O_CLOEXEC descriptors: close them here, above
     * all the parent's ends of our own pipes, or we would never see EOF on
     * stdin. */
    close(errfd);
    for (int i = 0; i < 3; i++) {
      /* One already replaced by a dup2 onto 0..2 is not ours to close. */
      if (high[i] > 2)
        close(high[i]);
      if (child_fds[i] > 2)
        close(child_fds[i]);
      if (parent_fds[i] > 2)
        close(parent_fds[i]);
    }
    for (size_t i = 0; i < spec->n_close_fds; i++)
      close(spec->close_fds[i]);
    /* The worker asks for PR_SET_PDEATHSIG again and checks its parent
     * again; both already hold here, so that is harmless. */
    if (spec->worker != NULL)
      _exit(ratchet_worker_main(spec->worker));
    _exit(spec->fork_main(spec->fork_arg));
  }
  if (spec->cwd != NULL && chdir(spec->cwd) != 0)
    report_and_exit(errfd, errno);
  char *const *env = spec->env != NULL ? spec->env : environ;
  execvpe(spec->argv[0], spec->argv, env);
  report_and_exit(errfd, errno);
}

int ratchet__proc_start(const ratchet__proc_spec *spec, pid_t *pid, int fds[3],
                        int *exec_errno) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  int ex[2] = {-1, -1};
  int rc = 0;
  *exec_errno = 0;
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 ||
      pipe2(err, O_CLOEXEC) != 0 || pipe2(ex, O_CLOEXEC) != 0) {
    rc = -errno;
    goto fail;
  }

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child == 0) {
    int child_fds[3] = {in[0], out[1], err[1]};
    int parent_fds[3] = {in[1], out[0], err[0]};
    child_main(spec, parent, child_fds, parent_fds, ex[1]);
  }
  int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (child < 0) {
    rc = -fork_errno;
    goto fail;
  }
  /* Both sides set the group, so it exists whichever runs first; EACCES
   * means the child has exec'd, having done it itself. */
  (void)setpgid(child, child);

  close(in[0]);
  close(out[1]);
  close(err[1]);
  close(ex[1]);
  int code = 0;
  ssize_t n;
  do
    n = read(ex[0], &code, sizeof code);
  while (n < 0 && errno == EINTR);
  close(ex[0]);
  if (n == (ssize_t)sizeof code)
    *exec_errno = code;

  *pid = child;
  fds[0] = in[1];
  fds[1] = out[0];
  fds[2] = err[0];
  return 0;

fail:
  close_pair(in);
  close_pair(out);
  close_pair(err);
  close_pair(ex);
  return rc;
}
