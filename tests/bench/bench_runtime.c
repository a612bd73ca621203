/*
 * bench_runtime.c - the process pool's costs (libratchet-runtime), next to
 * the pipe they ride on.
 *
 * 1. Worker start to Ready: a pool of one worker is started and closed again
 *    and again; the time from ratchet_pool_start to the READY event, in fork
 *    mode (a forked copy of this program serving "noop" with ratchet/worker.h)
 *    and in spawn mode (bench-worker, the same worker as its own executable:
 *    fork + exec + dynamic linking). Median and best of the runs.
 * 2. No-op tasks through the pool, end to end: the owner dispatches while
 *    the pool has room and again from every outcome, with 1 and 2 spawn-mode
 *    workers and pipelining 1 and 8; tasks/s from the first dispatch to the
 *    last outcome, median of the runs.
 * 3. For scale, the raw round trip of 9 bytes over two pipes to a forked
 *    child (write, read), as bench-ipc measures it.
 *
 * Then the best 2-worker figure against the design goal (>= 100,000 tasks/s
 * end to end with 2 workers). Numbers are printed, never asserted; the exit
 * status is 1 only if a task went wrong (a lost outcome, a bad Result).
 * Usage: bench-runtime [TASKS >= 1000, default 100000] [WORKER_PATH]
 * (default: bench-worker next to this program).
 */
#define _GNU_SOURCE

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include <ratchet/clock.h>
#include <ratchet/error.h>
#include <ratchet/pool.h>
#include <ratchet/worker.h>

#define RUNS         5
#define START_RUNS   20
#define RAW_TRIPS    20000u
#define GOAL_TASKS_S 100000.0

static int failed;

static void die(const char *what, int err) {
  fprintf(stderr, "bench-runtime: %s: %s\n", what, ratchet_strerror(err));
  exit(1);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ---- the fork-mode worker ---------------------------------------------- */

static int noop(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  (void)ctx;
  return 0;
}

static int fork_main(void *arg) {
  ratchet_worker_options o = RATCHET_WORKER_OPTIONS_INIT;
  o.name = "bench-runtime-fork";
  o.parent_pid = *(const int *)arg;
  ratchet_worker *w;
  if (ratchet_worker_new(&o, &w) != 0)
    return RATCHET_WORKER_EXIT_SYSTEM;
  int rc = ratchet_worker_register(w, "noop", noop, NULL);
  rc = rc == 0 ? ratchet_worker_main(w) : RATCHET_WORKER_EXIT_SYSTEM;
  ratchet_worker_free(w);
  return rc;
}

/* ---- the owner --------------------------------------------------------- */

typedef struct run {
  uv_loop_t loop;
  ratchet_pool *pool;
  uint64_t n_tasks, next_id, done;
  uint32_t ready, size;
  uint64_t t_start, t_ready, t0, t1;
  bool closed, failed;
} run;

static void dispatch_some(run *r) {
  static char kind[] = "noop";
  while (r->next_id <= r->n_tasks) {
    Ratchet__V1__Task t;
    ratchet__v1__task__init(&t);
    t.id = r->next_id;
    t.attempt = 1;
    t.kind = kind;
    int rc = ratchet_pool_dispatch(r->pool, &t, 0, RATCHET_POOL_ANY, NULL);
    if (rc == -EAGAIN)
      return;
    if (rc != 0)
      die("dispatch", rc);
    r->next_id++;
  }
}

static void on_outcome(ratchet_pool *p, const ratchet_pool_outcome *o) {
  run *r = ratchet_pool_data(p);
  if (o->result == NULL ||
      o->result->status != RATCHET__V1__STATUS__STATUS_OK) {
    fprintf(stderr, "bench-runtime: task %llu: %s\n",
            (unsigned long long)o->task_id,
            o->result == NULL ? o->reason : "not OK");
    failed = 1;
  }
  if (++r->done == r->n_tasks)
    r->t1 = ratchet_now_ns();
  else
    dispatch_some(r);
}

static void on_event(ratchet_pool *p, const ratchet_pool_event *ev) {
  run *r = ratchet_pool_data(p);
  if (ev->type == RATCHET_POOL_EVENT_READY && ++r->ready == r->size) {
    r->t_ready = ratchet_now_ns();
    if (r->n_tasks > 0) {
      r->t0 = r->t_ready;
      dispatch_some(r);
    }
  }
  if (ev->type == RATCHET_POOL_EVENT_FAILED) {
    fprintf(stderr, "bench-runtime: pool failed: %s\n", ev->message);
    r->failed = true;
    failed = 1;
  }
}

static void on_closed(void *data) {
  run *r = data;
  r->closed = true;
}

static const char *worker_argv[2];
static int parent_pid;

/* Starts a pool, runs n_tasks no-op tasks (0: none, only the start), closes
 * it. Returns the seconds from start to Ready (all workers), or the seconds
 * of the tasks. */
static double pool_run(ratchet_pool_mode mode, uint32_t size, uint32_t depth,
                       uint64_t n_tasks) {
  run r;
  memset(&r, 0, sizeof r);
  r.size = size;
  r.n_tasks = n_tasks;
  r.next_id = 1;
  if (uv_loop_init(&r.loop) != 0)
    die("uv_loop_init", -ENOMEM);
  ratchet_pool_options o = RATCHET_POOL_OPTIONS_INIT;
  o.mode = mode;
  if (mode == RATCHET_POOL_SPAWN) {
    o.argv = worker_argv;
  } else {
    o.fork_main = fork_main;
    o.fork_arg = &parent_pid;
  }
  o.size = size;
  o.pipeline_depth = depth;
  o.on_outcome = on_outcome;
  o.on_event = on_event;
  o.data = &r;
  int rc = ratchet_pool_new(&r.loop, &o, &r.pool);
  if (rc != 0)
    die("ratchet_pool_new", rc);
  r.t_start = ratchet_now_ns();
  rc = ratchet_pool_start(r.pool);
  if (rc != 0)
    die("ratchet_pool_start", rc);
  while (!r.failed && (r.ready < size || r.done < n_tasks))
    uv_run(&r.loop, UV_RUN_ONCE);
  ratchet_pool_close(r.pool, on_closed);
  while (!r.closed)
    uv_run(&r.loop, UV_RUN_ONCE);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  uv_loop_close(&r.loop);
  if (r.failed)
    exit(1);
  if (n_tasks == 0)
    return (double)(r.t_ready - r.t_start) / 1e9;
  return (double)(r.t1 - r.t0) / 1e9;
}

/* ---- the raw pipe round trip ------------------------------------------- */

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t k = read(fd, p, n);
    if (k <= 0) {
      if (k < 0 && errno == EINTR)
        continue;
      return -1;
    }
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static double raw_round_trip_us(void) {
  int to[2], from[2];
  if (pipe(to) != 0 || pipe(from) != 0)
    die("pipe", -errno);
  pid_t pid = fork();
  if (pid < 0)
    die("fork", -errno);
  char buf[9] = {0};
  if (pid == 0) {
    close(to[1]);
    close(from[0]);
    while (read_full(to[0], buf, sizeof buf) == 0)
      if (write(from[1], buf, sizeof buf) != (ssize_t)sizeof buf)
        _exit(1);
    _exit(0);
  }
  close(to[0]);
  close(from[1]);
  double runs[RUNS];
  for (int k = 0; k < RUNS; k++) {
    uint64_t t0 = ratchet_now_ns();
    for (unsigned i = 0; i < RAW_TRIPS; i++)
      if (write(to[1], buf, sizeof buf) != (ssize_t)sizeof buf ||
          read_full(from[0], buf, sizeof buf) != 0)
        die("raw round trip", -EIO);
    runs[k] = (double)(ratchet_now_ns() - t0) / 1e3 / RAW_TRIPS;
  }
  close(to[1]);
  close(from[0]);
  (void)waitpid(pid, NULL, 0);
  qsort(runs, RUNS, sizeof runs[0], cmp_double);
  return runs[RUNS / 2];
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv) {
  uint64_t n_tasks = 100000;
  if (argc > 1) {
    char *end;
    n_tasks = strtoull(argv[1], &end, 10);
    if (*end != '\0' || n_tasks < 1000) {
      fprintf(stderr, "usage: bench-runtime [TASKS >= 1000] [WORKER_PATH]\n");
      return 100;
    }
  }
  static char worker_path[PATH_MAX];
  if (argc > 2) {
    snprintf(worker_path, sizeof worker_path, "%s", argv[2]);
  } else {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
      die("readlink /proc/self/exe", -errno);
    self[n] = '\0';
    snprintf(worker_path, sizeof worker_path, "%s/bench-worker", dirname(self));
  }
  if (access(worker_path, X_OK) != 0) {
    fprintf(stderr, "bench-runtime: %s: %s\n", worker_path, strerror(errno));
    return 111;
  }
  worker_argv[0] = worker_path;
  worker_argv[1] = NULL;
  parent_pid = (int)getpid();

  printf("libratchet-runtime: the process pool (%s)\n\n", worker_path);

  /* 1. start to Ready */
  printf("%-44s %12s %12s\n", "worker start to Ready (1 worker)", "median",
         "best");
  static const struct {
    ratchet_pool_mode mode;
    const char *name;
  } modes[] = {{RATCHET_POOL_FORK, "fork (copy of this program, no exec)"},
               {RATCHET_POOL_SPAWN, "spawn (fork + exec bench-worker)"}};
  for (size_t m = 0; m < 2; m++) {
    double t[START_RUNS];
    for (int k = 0; k < START_RUNS; k++)
      t[k] = pool_run(modes[m].mode, 1, 1, 0) * 1e6;
    qsort(t, START_RUNS, sizeof t[0], cmp_double);
    printf("%-44s %9.0f us %9.0f us\n", modes[m].name, t[START_RUNS / 2], t[0]);
  }

  /* 2. no-op tasks */
  printf("\nno-op tasks through the pool, spawn mode, %llu tasks, median of "
         "%d\n",
         (unsigned long long)n_tasks, RUNS);
  printf("%-10s %-10s %14s %14s\n", "workers", "pipeline", "tasks/s",
         "us/task");
  static const uint32_t shapes[][2] = {{1, 1}, {1, 8}, {2, 1}, {2, 8}};
  double best2 = 0;
  for (size_t s = 0; s < 4; s++) {
    double rate[RUNS];
    for (int k = 0; k < RUNS; k++)
      rate[k] = (double)n_tasks / pool_run(RATCHET_POOL_SPAWN, shapes[s][0],
                                           shapes[s][1], n_tasks);
    qsort(rate, RUNS, sizeof rate[0], cmp_double);
    double med = rate[RUNS / 2];
    if (shapes[s][0] == 2 && med > best2)
      best2 = med;
    printf("%-10u %-10u %14.0f %14.2f\n", shapes[s][0], shapes[s][1], med,
           1e6 / med);
  }

  /* 3. for scale */
  double raw = raw_round_trip_us();
  printf("\nfor scale: raw 9-byte pipe round trip to a forked child: %.2f us "
         "(%.0f/s on one pair of pipes)\n",
         raw, 1e6 / raw);
  printf("design goal: >= %.0f no-op tasks/s end to end with 2 workers; "
         "best here %.0f/s = %.2fx the goal\n",
         GOAL_TASKS_S, best2, best2 / GOAL_TASKS_S);
  return failed;
}
