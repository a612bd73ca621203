/*
 * exec.c - runs a command with captured output (exec.h).
 *
 * The command is started with fork and exec in a new process group, every
 * signal at its default disposition and none blocked, since the worker
 * ignores SIGPIPE and that would otherwise be inherited, and with
 * PR_SET_PDEATHSIG(SIGKILL), so that a worker killed from outside (or
 * SIGKILLed with its orchestrator) does not leave its command running. Its
 * stdin, stdout and stderr are pipes; one poll(2) loop feeds stdin and drains
 * both outputs at once, so a command writing megabytes to stderr before reading
 * its stdin cannot deadlock. Each output is kept in memory up to max_memory
 * bytes, then moved to a temporary file (mkostemps, mode 0600) that receives
 * the rest.
 *
 * The loop wakes at least every CLI_EXEC_POLL_MS to ask the poll function
 * whether to stop, and on the exit of the command through a pidfd (Linux
 * 5.3+; elsewhere the 50 ms tick notices it). Stopping sends SIGTERM (and
 * SIGCONT) to the whole group, then SIGKILL after the kill grace. When the
 * command exits by itself but members of its group remain (a background
 * job, a grandchild holding the pipes), they get the same TERM-then-KILL
 * treatment: nothing of a task outlives it. A process that leaves the
 * group (setsid) escapes this, and so do the command's children when the
 * worker is SIGKILLed: `ratchet run`'s janitor (janitor.c) finds those by
 * the run's marker in their environment, which is why build_env never
 * lets a task replace or remove it.
 */
#define _GNU_SOURCE /* execvpe, mkostemps, pipe2 */

#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "janitor.h"
#include "ratchet/alloc.h"

extern char **environ;

#define READ_CHUNK 65536

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0)
    (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0)
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
#else
  (void)pid;
  return -1;
#endif
}

/* ---- the environment -------------------------------------------------- */

static size_t name_len(const char *entry) {
  const char *eq = strchr(entry, '=');
  return eq != NULL ? (size_t)(eq - entry) : strlen(entry);
}

/* True for the run's marker (janitor.h), which a task can neither
 * replace nor remove: the janitor finds what a run left by it. */
static bool is_marker(const char *entry) {
  size_t n = name_len(entry);
  return n == sizeof CLI_JANITOR_ENV - 1 &&
         strncmp(entry, CLI_JANITOR_ENV, n) == 0;
}

/* True if the environment entry is replaced or removed by the request. */
static bool overridden(const char *entry, const cli_exec_request *req) {
  size_t n = name_len(entry);
  if (is_marker(entry))
    return false;
  if (req->env_unset != NULL)
    for (char *const *u = req->env_unset; *u != NULL; u++)
      if (strlen(*u) == n && strncmp(entry, *u, n) == 0)
        return true;
  if (req->env_set != NULL)
    for (char *const *s = req->env_set; *s != NULL; s++)
      if (name_len(*s) == n && strncmp(entry, *s, n) == 0)
        return true;
  return false;
}

/* The command's environment: borrowed pointers to environ's strings and
 * the request's; only the array is allocated. */
static char **build_env(const cli_exec_request *req) {
  size_t n = 0, k = 0;
  for (char **p = environ; p != NULL && *p != NULL; p++)
    n++;
  if (req->env_set != NULL)
    for (char *const *s = req->env_set; *s != NULL; s++)
      n++;
  char **env = ratchet_calloc(n + 1, sizeof *env);
  if (env == NULL)
    return NULL;
  for (char **p = environ; p != NULL && *p != NULL; p++)
    if (!overridden(*p, req))
      env[k++] = *p;
  if (req->env_set != NULL)
    for (char *const *s = req->env_set; *s != NULL; s++)
      if (!is_marker(*s))
        env[k++] = *s;
  env[k] = NULL;
  return env;
}

/* The argv to spawn: the request's, or the shell's around it. */
static char **build_argv(const cli_exec_request *req) {
  size_t n = 0;
  while (req->argv[n] != NULL)
    n++;
  size_t total = req->use_shell ? n + 4 : n + 1;
  char **argv = ratchet_calloc(total, sizeof *argv);
  if (argv == NULL)
    return NULL;
  if (!req->use_shell) {
    memcpy(argv, req->argv, n * sizeof *argv);
    return argv;
  }
  static char bin_sh[] = "/bin/sh", dash_c[] = "-c", name[] = "ratchet-sh";
  argv[0] = req->shell != NULL ? req->shell : bin_sh;
  argv[1] = dash_c;
  argv[2] = req->argv[0];
  argv[3] = name; /* $0; argv[1...] become $1... */
  memcpy(argv + 4, req->argv + 1, (n - 1) * sizeof *argv);
  return argv;
}

/* ---- captured streams ------------------------------------------------- */

typedef struct capture {
  cli_exec_stream *s;
  int fd;       /* the pipe's read end, -1 once closed */
  int spill_fd; /* the spill file, -1 until spilled */
  const char *suffix;
} capture;

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0 ? -errno : -EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int open_spill(capture *c, const char *dir) {
  cli_sbuf path = CLI_SBUF_INIT;
  int rc = cli_sbuf_adds(&path, dir);
  if (rc == 0)
    rc = cli_sbuf_adds(&path, "/ratchet-XXXXXX");
  if (rc == 0)
    rc = cli_sbuf_adds(&path, c->suffix);
  if (rc != 0) {
    cli_sbuf_free(&path);
    return rc;
  }
  int fd = mkostemps(path.data, (int)strlen(c->suffix), O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    cli_sbuf_free(&path);
    return rc;
  }
  c->spill_fd = fd;
  c->s->path = cli_sbuf_take(&path);
  return 0;
}

static void capture_add(capture *c, const char *dir, uint64_t max,
                        const char *p, size_t n) {
  cli_exec_stream *s = c->s;
  s->total += n;
  if (s->error != 0)
    return;
  if (s->path == NULL) {
    if (s->mem.len + n <= max) {
      if (cli_sbuf_add(&s->mem, p, n) != 0)
        s->error = -ENOMEM;
      return;
    }
    int rc = open_spill(c, dir);
    if (rc == 0)
      rc = write_all(c->spill_fd, s->mem.data, s->mem.len);
    cli_sbuf_free(&s->mem);
    if (rc != 0) {
      s->error = rc;
      return;
    }
  }
  int rc = write_all(c->spill_fd, p, n);
  if (rc != 0)
    s->error = rc;
}

/* Reads what the pipe has; closes it at EOF or on an error. */
static void capture_read(capture *c, const char *dir, uint64_t max) {
  char buf[READ_CHUNK];
  for (int i = 0; i < 16; i++) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n > 0) {
      capture_add(c, dir, max, buf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    close_fd(&c->fd);
    return;
  }
}

/* ---- the run ---------------------------------------------------------- */

static void signal_group(pid_t pgid, int sig) {
  (void)kill(-pgid, sig);
  if (sig == SIGTERM)
    (void)kill(-pgid, SIGCONT);
}

/* Whether members of the group are left, once the command itself is
 * reaped. Orphans of the group are our children (we are a subreaper), so
 * those that ended are reaped here: a zombie still counts for kill(2),
 * and an init that does not reap (in a container) would otherwise keep
 * the group "alive" forever. */
static bool group_alive(pid_t pgid) {
  int st;
  while (waitpid(-pgid, &st, WNOHANG) > 0)
    ;
  return kill(-pgid, 0) == 0 || errno == EPERM;
}

/* Makes the worker the subreaper of what its commands leave behind, so
 * that orphaned members of a command's group stay reachable (and
 * reapable) until the group is ended. Once per process. */
static void become_subreaper(void) {
  static bool done;
  if (!done) {
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1);
    done = true;
  }
}

/* The child's side of spawn: only async-signal-safe calls until exec
 * (the worker is single-threaded, so execvpe's PATH search is safe too).
 * On failure the errno goes up the CLOEXEC pipe ep. */
static void child(const cli_exec_request *req, char **argv, char **envp,
                  int in_fd, int out_fd, int err_fd, int ep, pid_t parent) {
  int e = 0;
  (void)setpgid(0, 0);
  /* Die with the worker: a SIGKILLed worker cannot kill our group. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
    _exit(127);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      (void)sigaction(sig, &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  (void)sigprocmask(SIG_SETMASK, &none, NULL);
  if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
    e = errno;
  if (e == 0 && req->cwd != NULL && req->cwd[0] != '\0' && chdir(req->cwd) != 0)
    e = errno;
  if (e == 0) {
    execvpe(argv[0], argv, envp);
    e = errno;
  }
  ssize_t w = write(ep, &e, sizeof e);
  (void)w;
  _exit(127);
}

/*
 * Starts the command in a new process group with PR_SET_PDEATHSIG, every
 * signal at its default disposition and none blocked (the worker ignores
 * SIGPIPE; that must not be inherited). posix_spawn cannot ask for the
 * parent-death signal, hence vfork and our own child side, which makes
 * only system calls until it execs (as posix_spawn's own child does). Returns
 * 0, or the negated errno of the failed exec (the child is reaped), or of
 * fork/pipe.
 */
static int spawn(const cli_exec_request *req, int in_fd, int out_fd, int err_fd,
                 pid_t *pid) {
  char **argv = build_argv(req);
  char **envp = build_env(req);
  int ep[2] = {-1, -1};
  int rc = -ENOMEM;
  if (argv == NULL || envp == NULL)
    goto out;
  if (pipe2(ep, O_CLOEXEC) != 0) {
    rc = -errno;
    goto out;
  }
  pid_t parent = getpid();
  /* vfork: the child borrows the worker's memory until it execs, so no page
   * table is copied (a plain fork of the worker, which maps libuv,
   * protobuf-c, LMDB, ... costs a third of a `true` task here). Every
   * signal is blocked across it, so that no handler of the worker can run
   * in the child before child() has reset the dispositions. */
  sigset_t all, old;
  sigfillset(&all);
  (void)sigprocmask(SIG_SETMASK, &all, &old);
  pid_t p = vfork();
  if (p == 0)
    child(req, argv, envp, in_fd, out_fd, err_fd, ep[1], parent);
  int fork_errno = errno;
  (void)sigprocmask(SIG_SETMASK, &old, NULL);
  if (p < 0) {
    rc = -fork_errno;
    goto out;
  }
  (void)setpgid(p, p); /* also here: no race with a kill of the group */
  close_fd(&ep[1]);
  int e = 0;
  ssize_t n;
  do
    n = read(ep[0], &e, sizeof e);
  while (n < 0 && errno == EINTR);
  if (n == (ssize_t)sizeof e && e != 0) {
    int st;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR)
      ;
    rc = -e;
    goto out;
  }
  *pid = p;
  rc = 0;
out:
  close_fd(&ep[0]);
  close_fd(&ep[1]);
  ratchet_free(argv);
  ratchet_free(envp);
  return rc;
}

static void finish_status(cli_exec_result *res, int status) {
  if (WIFEXITED(status)) {
    res->exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    res->signal = WTERMSIG(status);
    res->core_dumped = WCOREDUMP(status) != 0;
    res->exit_code = 128 + res->signal;
  }
}

int cli_exec_run(const cli_exec_request *req, cli_exec_result *res,
                 cli_err *e) {
  memset(res, 0, sizeof *res);
  become_subreaper();
  if (req == NULL || req->argv == NULL || req->argv[0] == NULL) {
    cli_err_set(e, "exec: empty argv");
    return -EINVAL;
  }
  const char *dir = req->tmp_dir;
  if (dir == NULL || *dir == '\0')
    dir = getenv("TMPDIR");
  if (dir == NULL || *dir == '\0')
    dir = "/tmp";
  const uint64_t max =
      req->max_memory != 0 ? req->max_memory : CLI_EXEC_DEFAULT_MEMORY;
  const uint64_t grace_us =
      (uint64_t)(req->kill_grace_ms != 0 ? req->kill_grace_ms
                                         : CLI_EXEC_DEFAULT_GRACE_MS) *
      1000u;
  int in_p[2] = {-1, -1}, out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
  int rc = 0;
  if (pipe2(in_p, O_CLOEXEC) != 0 || pipe2(out_p, O_CLOEXEC) != 0 ||
      pipe2(err_p, O_CLOEXEC) != 0) {
    rc = -errno;
    cli_err_set(e, "exec: pipe: %s", strerror(-rc));
    goto fail;
  }
  pid_t pid = -1;
  const uint64_t t0 = now_us();
  rc = spawn(req, in_p[0], out_p[1], err_p[1], &pid);
  close_fd(&in_p[0]);
  close_fd(&out_p[1]);
  close_fd(&err_p[1]);
  if (rc == -ENOMEM || rc == -EAGAIN) {
    cli_err_set(e, "exec: cannot start a process: %s", strerror(-rc));
    goto fail;
  }
  if (rc != 0) {
    /* The command itself could not run: not found, not executable, a
     * bad cwd. The shell's numbers, so that logs read as users expect. */
    res->spawn_error = rc;
    res->exit_code = rc == -ENOENT ? 127 : 126;
    close_fd(&in_p[1]);
    close_fd(&out_p[0]);
    close_fd(&err_p[0]);
    return 0;
  }

  res->pid = (int)pid;
  capture out = {&res->out, out_p[0], -1, ".out"};
  capture err = {&res->err, err_p[0], -1, ".err"};
  int in_fd = in_p[1];
  set_nonblock(out.fd);
  set_nonblock(err.fd);
  if (req->stdin_len == 0)
    close_fd(&in_fd);
  else
    set_nonblock(in_fd);
  int pidfd = open_pidfd(pid);
  const uint64_t deadline =
      req->timeout_ms != 0 ? t0 + req->timeout_ms * 1000u : 0;
  uint64_t next_check = t0 + CLI_EXEC_POLL_MS * 1000u;
  uint64_t term_at = 0;
  bool term_sent = false, kill_sent = false, reaped = false;
  int status = 0;

  for (;;) {
    uint64_t now = now_us();
    /* Stop requests, while the command runs. */
    if (!reaped && !term_sent && now >= next_check) {
      next_check = now + CLI_EXEC_POLL_MS * 1000u;
      cli_exec_stop st = CLI_EXEC_RUN;
      if (deadline != 0 && now >= deadline)
        st = CLI_EXEC_TIMEOUT;
      else if (req->poll != NULL)
        st = req->poll(req->poll_ctx);
      if (st != CLI_EXEC_RUN) {
        res->stopped = st;
        signal_group(pid, SIGTERM);
        term_sent = true;
        term_at = now;
      }
    }
    if (term_sent && !kill_sent && now - term_at >= grace_us) {
      signal_group(pid, SIGKILL);
      kill_sent = true;
    }
    if (!reaped) {
      struct rusage ru;
      pid_t w = wait4(pid, &status, WNOHANG, &ru);
      if (w == pid) {
        reaped = true;
        res->usage = ru;
        close_fd(&pidfd);
        /* Members of its group still alive are left behind: end them. */
        if (group_alive(pid)) {
          res->leftovers = true;
          if (!term_sent) {
            signal_group(pid, SIGTERM);
            term_sent = true;
            term_at = now;
          }
        }
      } else if (w < 0 && errno != EINTR) {
        reaped = true; /* not ours any more: nothing to wait for */
        close_fd(&pidfd);
      }
    }
    if (reaped && out.fd < 0 && err.fd < 0 &&
        (!res->leftovers || !group_alive(pid)))
      break;

    struct pollfd p[4];
    nfds_t n = 0;
    int ii = -1, io = -1, ie = -1;
    if (in_fd >= 0) {
      ii = (int)n;
      p[n++] = (struct pollfd){in_fd, POLLOUT, 0};
    }
    if (out.fd >= 0) {
      io = (int)n;
      p[n++] = (struct pollfd){out.fd, POLLIN, 0};
    }
    if (err.fd >= 0) {
      ie = (int)n;
      p[n++] = (struct pollfd){err.fd, POLLIN, 0};
    }
    if (pidfd >= 0)
      p[n++] = (struct pollfd){pidfd, POLLIN, 0};
    int r = poll(p, n, CLI_EXEC_POLL_MS);
    if (r < 0 && errno != EINTR) {
      rc = -errno;
      break; /* cannot happen with valid fds; the group is ended below */
    }
    if (r <= 0)
      continue;
    if (ii >= 0 && p[ii].revents != 0) {
      size_t left = req->stdin_len - (size_t)res->stdin_written;
      size_t chunk = left < READ_CHUNK ? left : READ_CHUNK;
      ssize_t w = write(
          in_fd, (const char *)req->stdin_data + res->stdin_written, chunk);
      if (w > 0)
        res->stdin_written += (uint64_t)w;
      if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
          res->stdin_written == req->stdin_len)
        close_fd(&in_fd); /* done, or EPIPE: it stopped reading */
    }
    if (io >= 0 && p[io].revents != 0)
      capture_read(&out, dir, max);
    if (ie >= 0 && p[ie].revents != 0)
      capture_read(&err, dir, max);
  }
  if (rc != 0) {
    signal_group(pid, SIGKILL);
    if (!reaped)
      (void)waitpid(pid, &status, 0);
  }
  res->wall_us = now_us() - t0;
  finish_status(res, status);
  close_fd(&pidfd);
  close_fd(&in_fd);
  close_fd(&out.fd);
  close_fd(&err.fd);
  close_fd(&out.spill_fd);
  close_fd(&err.spill_fd);
  if (rc != 0) {
    cli_err_set(e, "exec: poll: %s", strerror(-rc));
    cli_exec_result_discard(res);
  }
  return rc;
fail:
  close_fd(&in_p[0]);
  close_fd(&in_p[1]);
  close_fd(&out_p[0]);
  close_fd(&out_p[1]);
  close_fd(&err_p[0]);
  close_fd(&err_p[1]);
  return rc;
}

void cli_exec_result_free(cli_exec_result *res) {
  cli_sbuf_free(&res->out.mem);
  cli_sbuf_free(&res->err.mem);
  ratchet_free(res->out.path);
  ratchet_free(res->err.path);
  res->out.path = res->err.path = NULL;
}

void cli_exec_result_discard(cli_exec_result *res) {
  if (res->out.path != NULL)
    (void)unlink(res->out.path);
  if (res->err.path != NULL)
    (void)unlink(res->err.path);
  cli_exec_result_free(res);
}
