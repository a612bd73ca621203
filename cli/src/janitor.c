/*
 * janitor.c - nothing of a `ratchet run` outlives it (janitor.h).
 *
 * Process groups and PR_SET_PDEATHSIG end the workers and their commands
 * when ratchet dies, but not what a command started: when a worker is
 * SIGKILLed its command dies of the parent-death signal and the command's
 * own children are reparented to init, out of everyone's reach. A task
 * that daemonises (setsid) escapes even a living worker. So every process
 * of a run carries a marker in its environment, CLI_JANITOR_ENV holding
 * the run's id, "<pid>.<64 random bits>": ratchet puts it in its own
 * environment before it starts anything, workers inherit it and exec.c
 * hands it on to every command, whatever the task asks for.
 *
 * At start ratchet forks the janitor, which leaves ratchet's session and
 * process group (setsid), so that neither `kill -9 PID` nor `kill -9
 * -PGID` of ratchet nor a hang-up of the terminal reaches it, ignores
 * SIGINT, SIGTERM and SIGHUP, points its stdio at /dev/null (a caller
 * reading ratchet's output to EOF must not wait for it), moves to / and
 * closes every other descriptor. It keeps only the read end of a pipe
 * whose write end ratchet alone holds (close-on-exec, so no worker
 * inherits it) and the write end of a second pipe for its answer. The
 * pipe reaches EOF when ratchet has exited, for any reason including
 * SIGKILL. Then the janitor sweeps: it reads /proc/PID/environ of every
 * process of its user and SIGKILLs each one whose marker lists this run's
 * id, then sweeps again, until a sweep finds nothing (a parent may still
 * have been forking, and a killed process shows its environment until it
 * is gone) or about ten seconds have passed; then it exits, and init
 * reaps it. A process is signalled through a pidfd taken before its
 * environment is read, so a recycled pid is never hit.
 *
 * On a normal exit (including after SIGINT or SIGTERM) ratchet writes a
 * byte first and waits for the answer: the janitor sweeps while ratchet
 * is still there (sparing ratchet itself, which it knows as its living
 * parent), so that what a task left behind is gone by the time `ratchet
 * run` returns. It sweeps once more at EOF, which costs a few
 * milliseconds.
 *
 * A worker that dies during the run leaves its command's children behind
 * while the task is retried elsewhere. Each worker therefore appends a
 * token "<run id>+<its pid>" to the marker its commands inherit, and
 * ratchet, seeing the worker exit, makes one sweep for that token from
 * its own process (cli_janitor_sweep_worker).
 *
 * Limits: a process that removes the marker from its environment and
 * then execs, or that runs as another user, escapes; only a cgroup would
 * hold every descendant for sure.
 */
#define _GNU_SOURCE /* pipe2, F_DUPFD_CLOEXEC, close_range */

#include "janitor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ratchet/alloc.h"

#define SWEEP_PAUSE_MS      20
#define SWEEP_MAX_MS        10000
#define ACK_WAIT_MS         5000
#define WORKER_SWEEP_PASSES 5

/* ---- matching the marker ---------------------------------------------- */

/* A streaming matcher over an environment block: entries are fed in any
 * chunks, and no entry is ever held in memory, however long. */
typedef struct matcher {
  const char *id;
  size_t id_len;
  enum { M_NAME, M_VALUE, M_SKIP } state;
  size_t pos;  /* bytes of CLI_JANITOR_ENV "=" matched, in M_NAME */
  size_t tpos; /* bytes of the id matched in the current token */
  bool tok_ok; /* the current token still equals the id so far */
  bool hit;
} matcher;

static const char marker_name[] = CLI_JANITOR_ENV "=";

static void m_init(matcher *m, const char *id) {
  memset(m, 0, sizeof *m);
  m->id = id;
  m->id_len = strlen(id);
  m->state = M_NAME;
}

static void m_token_end(matcher *m) {
  if (m->tok_ok && m->tpos == m->id_len && m->id_len > 0)
    m->hit = true;
  m->tpos = 0;
  m->tok_ok = true;
}

static void m_feed(matcher *m, const char *p, size_t n) {
  for (size_t i = 0; i < n && !m->hit; i++) {
    char c = p[i];
    switch (m->state) {
    case M_NAME:
      if (c == marker_name[m->pos]) {
        if (++m->pos == sizeof marker_name - 1) {
          m->state = M_VALUE;
          m->tpos = 0;
          m->tok_ok = true;
        }
      } else {
        m->pos = 0;
        m->state = c == '\0' ? M_NAME : M_SKIP;
      }
      break;
    case M_VALUE:
      if (c == ':' || c == '\0') {
        m_token_end(m);
        if (c == '\0') {
          m->state = M_NAME;
          m->pos = 0;
        }
      } else if (m->tok_ok && m->tpos < m->id_len && c == m->id[m->tpos]) {
        m->tpos++;
      } else {
        m->tok_ok = false;
      }
      break;
    case M_SKIP:
      if (c == '\0') {
        m->state = M_NAME;
        m->pos = 0;
      }
      break;
    }
  }
}

/* The block may end without a final NUL. */
static bool m_done(matcher *m) {
  if (!m->hit && m->state == M_VALUE)
    m_token_end(m);
  return m->hit;
}

bool cli_janitor_marked(const char *env, size_t len, const char *id) {
  matcher m;
  m_init(&m, id);
  m_feed(&m, env, len);
  return m_done(&m);
}

/* ---- the sweep ---------------------------------------------------------- */

static int pidfd_open_(pid_t pid) {
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, pid, 0);
#else
  (void)pid;
  return -1;
#endif
}

static void kill_it(pid_t pid, int pidfd) {
#ifdef SYS_pidfd_send_signal
  if (pidfd >= 0 &&
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) == 0)
    return;
#endif
  (void)pidfd;
  (void)kill(pid, SIGKILL);
}

/* True if the process behind the /proc/PID directory pdir carries id. */
static bool proc_marked(int pdir, const char *id) {
  int fd = openat(pdir, "environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  matcher m;
  m_init(&m, id);
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    m_feed(&m, buf, (size_t)n);
    if (m.hit)
      break;
  }
  close(fd);
  return m_done(&m);
}

/* SIGKILLs every process of our user, but us and spare, that carries id.
 * Returns how many there were. */
static unsigned sweep(const char *id, pid_t spare) {
  DIR *d = opendir("/proc");
  if (d == NULL)
    return 0;
  uid_t me = geteuid();
  pid_t self = getpid();
  unsigned found = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    char *end;
    errno = 0;
    long v = strtol(de->d_name, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0 || v > INT_MAX)
      continue;
    pid_t pid = (pid_t)v;
    if (pid == self || pid == spare)
      continue;
    int pdir = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pdir < 0)
      continue;
    struct stat st;
    if (fstat(pdir, &st) == 0 && st.st_uid == me) {
      /* The pidfd is taken first: if the environment can still be read
       * through pdir afterwards, the pid was not recycled in between, so
       * the pidfd names the process whose environment was read. */
      int pidfd = pidfd_open_(pid);
      if (proc_marked(pdir, id)) {
        kill_it(pid, pidfd);
        found++;
      }
      if (pidfd >= 0)
        close(pidfd);
    }
    close(pdir);
  }
  closedir(d);
  return found;
}

static void pause_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* Sweeps until nothing is found or SWEEP_MAX_MS pass. Ratchet is spared
 * while it is still our parent, that is, alive. */
static void sweep_all(const char *id, pid_t ratchet) {
  for (long waited = 0; waited < SWEEP_MAX_MS; waited += SWEEP_PAUSE_MS) {
    pid_t spare = getppid() == ratchet ? ratchet : 0;
    if (sweep(id, spare) == 0)
      return;
    pause_ms(SWEEP_PAUSE_MS);
  }
}

/* ---- the janitor process ---------------------------------------------- */

/* Leaves fd at target, closing the original. */
static int move_fd(int fd, int target) {
  if (fd == target)
    return 0;
  if (dup2(fd, target) < 0)
    return -1;
  close(fd);
  return 0;
}

static void close_from(int lowest) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)lowest, ~0u, 0) == 0)
    return;
#endif
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 65536)
    max = 65536;
  for (int fd = lowest; fd < max; fd++)
    (void)close(fd);
}

_Noreturn static void janitor_main(int tell_fd, int ack_fd, pid_t ratchet,
                                   const char *id) {
  (void)setsid();
  struct sigaction ign;
  memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  static const int ignored[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT,
                                SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE};
  for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
    (void)sigaction(ignored[i], &ign, NULL);
  sigset_t none;
  sigemptyset(&none);
  (void)sigprocmask(SIG_SETMASK, &none, NULL);
  (void)prctl(PR_SET_NAME, "ratchet-janitor");
  if (chdir("/") != 0) {
    /* Nothing to do about it: the sweep does not need the directory. */
  }

  /* Both pipe ends are above 2 (cli_janitor_start sees to it), so stdio
   * can be replaced first, then the ends moved to 3 and 4. */
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int fd = 0; fd <= 2; fd++) {
    if (null >= 0)
      (void)dup2(null, fd);
    else
      (void)close(fd);
  }
  if (null > 2)
    close(null);
  if (ack_fd == 3) {
    int t = fcntl(ack_fd, F_DUPFD_CLOEXEC, 5);
    close(ack_fd);
    ack_fd = t;
  }
  if (move_fd(tell_fd, 3) != 0 || move_fd(ack_fd, 4) != 0)
    _exit(1);
  close_from(5);

  char c;
  for (;;) {
    ssize_t n = read(3, &c, 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 1) { /* a clean exit: sweep now, while ratchet waits */
      sweep_all(id, ratchet);
      ssize_t w = write(4, "s", 1);
      (void)w;
      continue;
    }
    break; /* EOF (or an error): ratchet is gone */
  }
  close(4);
  sweep_all(id, ratchet);
  _exit(0);
}

/* ---- ratchet's side ----------------------------------------------------- */

static void close_pair(int p[2]) {
  for (int i = 0; i < 2; i++)
    if (p[i] >= 0)
      close(p[i]);
}

/* A close-on-exec pipe whose ends are both above 2: with stdio closed
 * when ratchet started, pipe2 could hand out 1, and ratchet's output
 * would go to the janitor. */
static int high_pipe(int p[2]) {
  p[0] = p[1] = -1;
  if (pipe2(p, O_CLOEXEC) != 0)
    return -errno;
  for (int i = 0; i < 2; i++) {
    if (p[i] > 2)
      continue;
    int fd = fcntl(p[i], F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
      int e = errno;
      close_pair(p);
      return -e;
    }
    close(p[i]);
    p[i] = fd;
  }
  return 0;
}

static uint64_t random64(void) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v)
    return v;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
         ((uint64_t)getpid() << 32);
}

int cli_janitor_start(cli_janitor *j) {
  *j = (cli_janitor)CLI_JANITOR_INIT;
  char id[CLI_JANITOR_ID_MAX];
  snprintf(id, sizeof id, "%ld.%016llx", (long)getpid(),
           (unsigned long long)random64());

  /* The new value: ours appended to an outer run's. */
  const char *outer = getenv(CLI_JANITOR_ENV);
  size_t outer_len = outer != NULL ? strlen(outer) : 0;
  char *value = ratchet_malloc(outer_len + 1 + sizeof id);
  if (value == NULL)
    return -ENOMEM;
  if (outer_len > 0)
    snprintf(value, outer_len + 1 + sizeof id, "%s:%s", outer, id);
  else
    snprintf(value, sizeof id, "%s", id);

  int tell[2], ack[2] = {-1, -1};
  int rc = high_pipe(tell);
  if (rc == 0 && (rc = high_pipe(ack)) != 0)
    close_pair(tell);
  if (rc != 0) {
    ratchet_free(value);
    return rc;
  }
  pid_t ratchet = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    rc = -errno;
    close_pair(tell);
    close_pair(ack);
    ratchet_free(value);
    return rc;
  }
  if (pid == 0) {
    close(tell[1]);
    close(ack[0]);
    janitor_main(tell[0], ack[1], ratchet, id);
  }
  close(tell[0]);
  close(ack[1]);
  if (setenv(CLI_JANITOR_ENV, value, 1) != 0) {
    rc = -errno;
    /* EOF: the janitor finds nothing marked and exits at once. */
    close(tell[1]);
    close(ack[0]);
    (void)waitpid(pid, NULL, 0);
    ratchet_free(value);
    return rc;
  }
  ratchet_free(value);
  j->pid = pid;
  j->tell_fd = tell[1];
  j->ack_fd = ack[0];
  memcpy(j->id, id, sizeof id);
  return 0;
}

/* The worker token of worker pid in run id, "<id>+<pid>". */
static void worker_token(char *buf, size_t size, const char *id, long pid) {
  snprintf(buf, size, "%s+%ld", id, pid);
}

int cli_janitor_mark_worker(void) {
  const char *v = getenv(CLI_JANITOR_ENV);
  if (v == NULL || *v == '\0')
    return 0;
  /* The innermost run: the last token that is not a worker's. */
  const char *end = v + strlen(v), *id = NULL;
  size_t id_len = 0;
  for (const char *p = v; p < end;) {
    const char *q = memchr(p, ':', (size_t)(end - p));
    size_t n = q != NULL ? (size_t)(q - p) : (size_t)(end - p);
    if (n > 0 && n < CLI_JANITOR_ID_MAX && memchr(p, '+', n) == NULL) {
      id = p;
      id_len = n;
    }
    p += n + 1;
  }
  if (id == NULL)
    return 0;
  char run_id[CLI_JANITOR_ID_MAX], tok[CLI_JANITOR_ID_MAX + 24];
  memcpy(run_id, id, id_len);
  run_id[id_len] = '\0';
  worker_token(tok, sizeof tok, run_id, (long)getpid());
  size_t len = strlen(v) + 1 + strlen(tok) + 1;
  char *value = ratchet_malloc(len);
  if (value == NULL)
    return -ENOMEM;
  snprintf(value, len, "%s:%s", v, tok);
  int rc = setenv(CLI_JANITOR_ENV, value, 1) == 0 ? 0 : -errno;
  ratchet_free(value);
  return rc;
}

unsigned cli_janitor_sweep_worker(const char *id, pid_t worker) {
  if (id == NULL || *id == '\0' || worker <= 0)
    return 0;
  char tok[CLI_JANITOR_ID_MAX + 24];
  worker_token(tok, sizeof tok, id, (long)worker);
  /* Again until a pass finds nothing (a dying parent may still fork, and
   * a nested run's janitor killed here no longer sweeps its own run), a
   * few passes at most: a process stuck in the kernel shows its
   * environment after SIGKILL, and would be found again and again. What
   * is left the janitor ends with the run. The first pass's count is
   * what is reported. */
  unsigned first = sweep(tok, 0);
  unsigned n = first;
  for (int pass = 1; n > 0 && pass < WORKER_SWEEP_PASSES; pass++) {
    pause_ms(SWEEP_PAUSE_MS);
    n = sweep(tok, 0);
  }
  return first;
}

/* Writes the byte without dying of SIGPIPE if the janitor is gone: the
 * signal is blocked and, if it was raised, taken back. */
static bool tell_clean(int fd) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  bool was_pending = false;
  sigset_t pending;
  if (sigpending(&pending) == 0)
    was_pending = sigismember(&pending, SIGPIPE) == 1;
  (void)pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  ssize_t n;
  do
    n = write(fd, "c", 1);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    (void)sigtimedwait(&pipe_set, NULL, &zero);
  }
  (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
  return n == 1;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void cli_janitor_finish(cli_janitor *j) {
  if (j->pid < 0)
    return;
  if (tell_clean(j->tell_fd)) {
    uint64_t end = now_ms() + ACK_WAIT_MS;
    struct pollfd p = {.fd = j->ack_fd, .events = POLLIN};
    for (uint64_t now = now_ms(); now < end; now = now_ms()) {
      int n = poll(&p, 1, (int)(end - now));
      if (n < 0 && errno == EINTR)
        continue;
      if (n > 0) {
        char c;
        ssize_t r = read(j->ack_fd, &c, 1);
        (void)r;
      }
      break;
    }
  }
  close(j->ack_fd);
  /* tell_fd stays open on purpose: it closes when this process exits,
   * and that EOF is what starts the janitor's last sweep. Closing it now
   * would let the janitor sweep while we still run. */
  j->pid = -1;
  j->ack_fd = -1;
}
