/*
 * test_metrics.c - Prometheus metrics of an orchestrator
 * (runtime/src/metrics.c, metrics_http.c).
 *
 * The tests run real tasks on the orchestrator harness (orch_testutil.h)
 * and read the rendered text as a scraper would: a sample's value by its
 * series, the families' HELP and TYPE lines, and `promtool check metrics`
 * (Debian's prometheus package, which cmake/install-deps.sh installs) as
 * the judge of the format. The HTTP endpoint is scraped through a plain
 * TCP socket, from a thread of the test while the loop runs tasks: that is
 * where the server's thread meets the loop's, for TSan to watch.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "orch_testutil.h"
#include "ratchet/alloc.h"
#include "ratchet/metrics.h"
#include "testutil.h"

#define WEIRD_KIND     "we\"ird\\kind\nline"
#define WEIRD_LABEL    "kind=\"we\\\"ird\\\\kind\\nline\""
#define BAD_UTF8_KIND  "bad\xff"
#define BAD_UTF8_LABEL "kind=\"bad\xef\xbf\xbd\""

/* ---- reading the text ---------------------------------------------------- */

static char *render(ratchet_metrics *m) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(ratchet_metrics_render(m, &text, &len), 0);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  return text;
}

/* The line that starts with series and a space, or NULL. */
static const char *find_series(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p != NULL && *p != '\0';) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return p;
    p = strchr(p, '\n');
    if (p != NULL)
      p++;
  }
  return NULL;
}

/* The value of series as an integer (asserts that it is there and whole). */
static uint64_t value(const char *text, const char *series) {
  const char *line = find_series(text, series);
  if (line == NULL)
    fail_msg("no series %s in:\n%s", series, text);
  char *end;
  unsigned long long v = strtoull(line + strlen(series) + 1, &end, 10);
  assert_true(*end == '\n');
  return v;
}

/* The value of series as seconds. */
static double seconds(const char *text, const char *series) {
  const char *line = find_series(text, series);
  if (line == NULL)
    fail_msg("no series %s", series);
  return strtod(line + strlen(series) + 1, NULL);
}

static bool has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; p != NULL && *p != '\0';) {
    if (strncmp(p, line, n) == 0 && p[n] == '\n')
      return true;
    p = strchr(p, '\n');
    if (p != NULL)
      p++;
  }
  return false;
}

/* Checks that the buckets of one histogram series are cumulative, end in
 * +Inf with the count, and returns the count. */
static uint64_t check_histogram(const char *text, const char *name,
                                const char *labels) {
  char series[512];
  uint64_t prev = 0;
  for (unsigned i = 0; i < RATCHET_HIST_FINITE; i++) {
    uint64_t ns = ratchet_histogram_bound_ns(i);
    char le[40];
    int n = snprintf(le, sizeof le, "%llu.%09llu",
                     (unsigned long long)(ns / 1000000000u),
                     (unsigned long long)(ns % 1000000000u));
    while (le[n - 1] == '0')
      le[--n] = '\0';
    if (le[n - 1] == '.')
      le[--n] = '\0';
    snprintf(series, sizeof series, "%s_bucket{%s,le=\"%s\"}", name, labels,
             le);
    uint64_t v = value(text, series);
    assert_true(v >= prev);
    prev = v;
  }
  snprintf(series, sizeof series, "%s_bucket{%s,le=\"+Inf\"}", name, labels);
  uint64_t inf = value(text, series);
  assert_true(inf >= prev);
  snprintf(series, sizeof series, "%s_count{%s}", name, labels);
  assert_int_equal(value(text, series), inf);
  snprintf(series, sizeof series, "%s_sum{%s}", name, labels);
  assert_true(seconds(text, series) >= 0.0);
  return inf;
}

static bool have_promtool(void) {
  return system("command -v promtool >/dev/null 2>&1") == 0;
}

/* Runs `promtool check metrics` on text; fails the test with promtool's
 * words if it objects. */
static void promtool_check(const char *text) {
  if (!have_promtool()) {
    print_message("promtool not found (Debian package prometheus; "
                  "cmake/install-deps.sh installs it): format check "
                  "skipped\n");
    skip();
  }
  char path[] = "/tmp/ratchet-metrics-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  size_t len = strlen(text);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char out[4096];
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  unlink(path);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || n > 0)
    fail_msg("promtool check metrics (status %d):\n%s", st, out);
}

/* ---- a run with a known outcome ------------------------------------------ */

/* Creates the harness unstarted, attaches m, then starts: m sees the first
 * worker starts too. */
static ot *harness_with_metrics(ratchet_metrics **m, uint32_t size,
                                uint32_t poison) {
  ot_options oo = OT_OPTIONS_INIT;
  oo.size = size;
  oo.start = false;
  if (poison != 0)
    oo.poison_threshold = poison;
  ot *t = ot_new(&oo, NULL);
  assert_int_equal(ratchet_metrics_new(t->o, m), 0);
  ot_start(t, size);
  return t;
}

static uint64_t submit(ot *t, const char *kind, const char *payload) {
  ratchet_task_spec s = ot_spec(t, kind, payload);
  return ot_submit(t, &s);
}

static void test_render_after_run(void **state) {
  (void)state;
  ratchet_metrics *m;
  ot *t = harness_with_metrics(&m, 2, 0);
  submit(t, "echo", "a");
  submit(t, "echo", "b");
  submit(t, "echo", "c");
  submit(t, "fail", "x");
  submit(t, "fail", "y");
  uint64_t weird = submit(t, WEIRD_KIND, "w");
  submit(t, BAD_UTF8_KIND, "u");
  ot_run_until(t, ot_p_done, 7);
  ratchet_status weird_status = ot_result(t, weird)->status;

  char *text = render(m);
  /* Families announce themselves. */
  assert_true(has_line(text, "# TYPE ratchet_tasks_submitted_total counter"));
  assert_true(has_line(text, "# TYPE ratchet_task_run_seconds histogram"));
  assert_true(has_line(text, "# TYPE ratchet_tasks_queued gauge"));
  assert_true(has_line(text, "# TYPE ratchet_breaker_state gauge"));
  assert_true(has_line(text, "# HELP ratchet_tasks_submitted_total Tasks "
                             "accepted by submit."));
  /* Tasks by kind and status. */
  assert_int_equal(value(text, "ratchet_tasks_submitted_total{kind=\"echo\"}"),
                   3);
  assert_int_equal(value(text, "ratchet_tasks_submitted_total{kind=\"fail\"}"),
                   2);
  assert_int_equal(
      value(text, "ratchet_tasks_completed_total{kind=\"echo\",status=\"ok\"}"),
      3);
  assert_int_equal(
      value(text,
            "ratchet_tasks_completed_total{kind=\"echo\",status=\"failed\"}"),
      0);
  assert_int_equal(
      value(text,
            "ratchet_tasks_completed_total{kind=\"fail\",status=\"failed\"}"),
      2);
  assert_int_equal(value(text, "ratchet_task_attempts_total{kind=\"echo\"}"),
                   3);
  assert_int_equal(value(text, "ratchet_task_retries_total{kind=\"fail\"}"), 0);
  assert_int_equal(value(text, "ratchet_cache_hits_total{kind=\"echo\"}"), 0);
  /* Label values are escaped; bytes that are not UTF-8 are replaced. */
  char series[256];
  snprintf(series, sizeof series,
           "ratchet_tasks_completed_total{" WEIRD_LABEL ",status=\"%s\"}",
           ratchet_status_name(weird_status));
  assert_int_equal(value(text, series), 1);
  assert_int_equal(
      value(text, "ratchet_tasks_submitted_total{" BAD_UTF8_LABEL "}"), 1);
  /* Gauges, once everything is done. */
  assert_int_equal(value(text, "ratchet_tasks_queued"), 0);
  assert_int_equal(value(text, "ratchet_tasks_delayed"), 0);
  assert_int_equal(value(text, "ratchet_tasks_in_flight"), 0);
  assert_int_equal(value(text, "ratchet_workers_ready"), 2);
  /* Histograms in seconds, cumulative, only for what happened. */
  assert_int_equal(check_histogram(text, "ratchet_task_run_seconds",
                                   "kind=\"echo\",status=\"ok\""),
                   3);
  assert_int_equal(check_histogram(text, "ratchet_task_queue_wait_seconds",
                                   "kind=\"echo\",status=\"ok\""),
                   3);
  assert_int_equal(check_histogram(text, "ratchet_task_duration_seconds",
                                   "kind=\"fail\",status=\"failed\""),
                   2);
  assert_true(has_line(text, "ratchet_task_run_seconds_bucket{kind=\"echo\","
                             "status=\"ok\",le=\"2147.483648\"} 3"));
  assert_null(find_series(text, "ratchet_task_run_seconds_count{kind=\"echo\","
                                "status=\"failed\"}"));
  /* Worker counters from the event subscriber. */
  assert_int_equal(value(text, "ratchet_worker_starts_total{pool=\"0\"}"), 2);
  assert_int_equal(value(text, "ratchet_worker_exits_total{pool=\"0\"}"), 0);
  assert_int_equal(value(text, "ratchet_pool_failed{pool=\"0\"}"), 0);
  promtool_check(text);
  ratchet_free(text);

  /* Detached, the object keeps the run's final numbers after the
   * orchestrator is gone. */
  assert_int_equal(ratchet_metrics_detach(m), 0);
  assert_int_equal(ratchet_metrics_detach(m), 0);
  ot_close(t);
  text = render(m);
  assert_int_equal(
      value(text, "ratchet_tasks_completed_total{kind=\"echo\",status=\"ok\"}"),
      3);
  assert_int_equal(value(text, "ratchet_worker_starts_total{pool=\"0\"}"), 2);
  promtool_check(text);
  ratchet_free(text);
  ratchet_metrics_free(m);
}

/* Workers dying under a poison pill, and a breaker opening. */
static void test_workers_and_breaker(void **state) {
  (void)state;
  ratchet_metrics *m;
  ot *t = harness_with_metrics(&m, 1, 2);
  ratchet_breaker_options bo = RATCHET_ORCH_BREAKER_DEFAULTS;
  bo.window = RATCHET_BREAKER_WINDOW_CONSECUTIVE;
  bo.consecutive_failures = 2;
  bo.open_duration_ns = OT_MS(60000);
  bo.max_open_duration_ns = OT_MS(60000);
  assert_int_equal(ratchet_orch_breaker_config(t->o, "g\"1", &bo), 0);
  ratchet_policy_breaker pb = RATCHET_POLICY_BREAKER_INIT;
  pb.group = "g\"1";

  uint64_t pill = submit(t, "die", "x");
  ot_run_until(t, ot_p_task_done, pill);
  assert_int_equal(ot_result(t, pill)->status, RATCHET_STATUS_POISON);
  for (int i = 0; i < 4; i++) {
    ratchet_task_spec s = ot_spec(t, "fail", "b");
    s.breaker = &pb;
    ot_submit(t, &s);
  }
  ot_run_until(t, ot_p_done, 5);
  /* Wait for the worker the pill killed last to be back. */
  ot_run_until(t, ot_p_ready, 3);

  char *text = render(m);
  assert_int_equal(value(text, "ratchet_worker_starts_total{pool=\"0\"}"), 3);
  assert_int_equal(value(text, "ratchet_worker_exits_total{pool=\"0\"}"), 2);
  assert_int_equal(value(text, "ratchet_worker_restarts_total{pool=\"0\"}"), 2);
  assert_int_equal(value(text, "ratchet_worker_hangs_total{pool=\"0\"}"), 0);
  assert_int_equal(
      value(text, "ratchet_task_attempts_lost_total{kind=\"die\"}"), 2);
  assert_int_equal(
      value(text,
            "ratchet_tasks_completed_total{kind=\"die\",status=\"poison\"}"),
      1);
  assert_int_equal(
      value(text,
            "ratchet_tasks_completed_total{kind=\"fail\",status=\"failed\"}"),
      2);
  assert_int_equal(
      value(text,
            "ratchet_tasks_completed_total{kind=\"fail\",status=\"rejected\"}"),
      2);
  assert_int_equal(
      value(text, "ratchet_breaker_state{group=\"g\\\"1\",state=\"open\"}"), 1);
  assert_int_equal(
      value(text, "ratchet_breaker_state{group=\"g\\\"1\",state=\"closed\"}"),
      0);
  assert_int_equal(value(text, "ratchet_breaker_transitions_total{group="
                               "\"g\\\"1\",from=\"closed\",to=\"open\"}"),
                   1);
  promtool_check(text);
  ratchet_free(text);
  ratchet_metrics_free(m); /* attached: free leaves the bus itself */
  ot_close(t);
}

/* ---- a detached object without a run --------------------------------------
 */

typedef struct bare {
  uv_loop_t loop;
  ratchet_orch *o;
  ratchet_metrics *m;
} bare;

static void bare_open(bare *b) {
  assert_int_equal(uv_loop_init(&b->loop), 0);
  ratchet_orch_options oo = RATCHET_ORCH_OPTIONS_INIT;
  assert_int_equal(ratchet_orch_new(&b->loop, &oo, &b->o), 0);
  assert_int_equal(ratchet_metrics_new(b->o, &b->m), 0);
  assert_int_equal(ratchet_metrics_detach(b->m), 0);
  ratchet_orch_close(b->o, NULL);
  assert_int_equal(uv_run(&b->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&b->loop), 0);
}

static void test_empty_render(void **state) {
  (void)state;
  bare b;
  bare_open(&b);
  char *text = render(b.m);
  assert_int_equal(value(text, "ratchet_tasks_queued"), 0);
  assert_true(has_line(text, "# TYPE ratchet_worker_starts_total counter"));
  promtool_check(text);
  ratchet_free(text);
  ratchet_metrics_free(b.m);
  assert_int_equal(ratchet_metrics_new(NULL, &b.m), -EINVAL);
  assert_int_equal(ratchet_metrics_render(NULL, &text, NULL), -EINVAL);
  ratchet_metrics_free(NULL);
}

static void test_render_enomem(void **state) {
  (void)state;
  bare b;
  bare_open(&b);
  /* Every allocation failing in turn: -ENOMEM, nothing leaked, until it
   * succeeds. */
  for (size_t fail_after = 0;; fail_after++) {
    tu_alloc_install(fail_after);
    char *text = (char *)1;
    int rc = ratchet_metrics_render(b.m, &text, NULL);
    if (rc == 0) {
      ratchet_free(text);
      assert_int_equal(tu_alloc_live(), 0);
      tu_alloc_uninstall();
      break;
    }
    assert_int_equal(rc, -ENOMEM);
    assert_null(text);
    assert_int_equal(tu_alloc_live(), 0);
    tu_alloc_uninstall();
    assert_true(fail_after < 64);
  }
  ratchet_metrics_free(b.m);
}

/* ---- the file ---------------------------------------------------------------
 */

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  char *buf = malloc(1 << 20);
  assert_non_null(buf);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static unsigned count_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  unsigned n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

typedef struct reader_arg {
  const char *path;
  atomic_bool stop;
  unsigned reads, torn;
} reader_arg;

/* Reads the file over and over: every read must be a whole rendering. */
static void *reader(void *p) {
  reader_arg *a = p;
  while (!atomic_load(&a->stop)) {
    char *text = read_file(a->path);
    if (text == NULL)
      continue;
    size_t n = strlen(text);
    const char *last = "ratchet_metrics_events_lost_total 0\n";
    if (n < strlen(last) || strcmp(text + n - strlen(last), last) != 0 ||
        strncmp(text, "# HELP ", 7) != 0)
      a->torn++;
    a->reads++;
    free(text);
  }
  return NULL;
}

static void test_write_file(void **state) {
  (void)state;
  bare b;
  bare_open(&b);
  char dir[] = "/tmp/ratchet-metrics-dir-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], bad[300];
  snprintf(path, sizeof path, "%s/ratchet.prom", dir);

  /* An old file is replaced whole, by a new inode (rename). */
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("old\n", f);
  fclose(f);
  struct stat before, after;
  assert_int_equal(stat(path, &before), 0);
  int fds = tu_count_fds();
  assert_int_equal(ratchet_metrics_write_file(b.m, path), 0);
  assert_int_equal(tu_count_fds(), fds);
  assert_int_equal(stat(path, &after), 0);
  assert_true(before.st_ino != after.st_ino);
  assert_int_equal(after.st_mode & 0777, 0644);
  char *text = read_file(path);
  char *expect = render(b.m);
  assert_string_equal(text, expect);
  promtool_check(text);
  free(text);
  ratchet_free(expect);
  assert_int_equal(count_entries(dir), 1); /* no temporary file left */

  /* Readers never see a part. */
  reader_arg ra = {.path = path};
  atomic_init(&ra.stop, false);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, reader, &ra), 0);
  for (int i = 0; i < 200; i++)
    assert_int_equal(ratchet_metrics_write_file(b.m, path), 0);
  atomic_store(&ra.stop, true);
  pthread_join(th, NULL);
  assert_int_equal(ra.torn, 0);
  assert_true(ra.reads > 0);
  assert_int_equal(count_entries(dir), 1);

  /* Errors leave nothing behind and name the cause. */
  snprintf(bad, sizeof bad, "%s/missing/ratchet.prom", dir);
  assert_int_equal(ratchet_metrics_write_file(b.m, bad), -ENOENT);
  assert_int_equal(ratchet_metrics_write_file(b.m, dir), -EISDIR);
  assert_int_equal(ratchet_metrics_write_file(b.m, ""), -EINVAL);
  assert_int_equal(ratchet_metrics_write_file(b.m, NULL), -EINVAL);
  assert_int_equal(count_entries(dir), 1);
  assert_int_equal(tu_count_fds(), fds);

  unlink(path);
  rmdir(dir);
  ratchet_metrics_free(b.m);
}

/* ---- listen addresses -------------------------------------------------- */

static void test_parse_listen(void **state) {
  (void)state;
  static const struct {
    const char *in, *host;
    int port; /* -1: refused */
  } cases[] = {
      {"9464", "127.0.0.1", 9464},
      {":9464", "127.0.0.1", 9464},
      {"localhost:80", "127.0.0.1", 80},
      {"127.0.0.1:0", "127.0.0.1", 0},
      {"0.0.0.0:9100", "0.0.0.0", 9100},
      {"10.1.2.3:65535", "10.1.2.3", 65535},
      {"[::1]:9464", "::1", 9464},
      {"[::]:1", "::", 1},
      {"65536", NULL, -1},
      {"", NULL, -1},
      {":", NULL, -1},
      {"x:80", NULL, -1},
      {"example.com:80", NULL, -1},
      {"1.2.3:80", NULL, -1},
      {"::1:80", NULL, -1},
      {"[::1]80", NULL, -1},
      {"[zz]:80", NULL, -1},
      {"127.0.0.1:", NULL, -1},
      {"127.0.0.1:-1", NULL, -1},
      {"127.0.0.1:+80", NULL, -1},
      {"127.0.0.1:009464", NULL, -1},
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(cases); i++) {
    char host[RATCHET_METRICS_HOST_MAX];
    uint16_t port = 0;
    int rc =
        ratchet_metrics_parse_listen(cases[i].in, host, sizeof host, &port);
    if (cases[i].port < 0) {
      if (rc != -EINVAL)
        fail_msg("'%s' accepted", cases[i].in);
      continue;
    }
    if (rc != 0)
      fail_msg("'%s' refused", cases[i].in);
    assert_string_equal(host, cases[i].host);
    assert_int_equal(port, cases[i].port);
  }
  char small[8];
  uint16_t port;
  assert_int_equal(
      ratchet_metrics_parse_listen("80", small, sizeof small, &port), -EINVAL);
}

/* ---- HTTP -------------------------------------------------------------- */

typedef struct http_reply {
  int status;
  char content_type[128];
  char *body; /* malloc'ed */
} http_reply;

/* One request over a fresh connection; status 0 if the connection failed. */
static http_reply http(uint16_t port, const char *method, const char *path) {
  http_reply r = {0, "", NULL};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return r;
  }
  char req[256];
  int n = snprintf(req, sizeof req,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: "
                   "text/plain\r\nConnection: close\r\n\r\n",
                   method, path);
  assert_int_equal(write(fd, req, (size_t)n), n);
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  for (;;) {
    if (len + 4096 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    ssize_t got = read(fd, buf + len, cap - len - 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    len += (size_t)got;
  }
  close(fd);
  buf[len] = '\0';
  char *end = strstr(buf, "\r\n\r\n");
  assert_non_null(end);
  *end = '\0';
  assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &r.status), 1);
  const char *ct = strcasestr(buf, "\r\nContent-Type: ");
  if (ct != NULL) {
    ct += strlen("\r\nContent-Type: ");
    size_t l = strcspn(ct, "\r");
    snprintf(r.content_type, sizeof r.content_type, "%.*s", (int)l, ct);
  }
  r.body = strdup(end + 4);
  assert_non_null(r.body);
  free(buf);
  return r;
}

typedef struct scraper {
  uint16_t port;
  unsigned rounds;
  unsigned ok;
} scraper;

static void *scrape_loop(void *p) {
  scraper *s = p;
  for (unsigned i = 0; i < s->rounds; i++) {
    http_reply r = http(s->port, "GET", "/metrics");
    if (r.status == 200 && strstr(r.body, "ratchet_tasks_submitted_total") &&
        strstr(r.body, "ratchet_metrics_events_lost_total 0\n"))
      s->ok++;
    free(r.body);
  }
  return NULL;
}

static void test_http(void **state) {
  (void)state;
  ratchet_metrics *m;
  ot *t = harness_with_metrics(&m, 2, 0);
  int fds = tu_count_fds();
  uint16_t port = 0;
  assert_int_equal(ratchet_metrics_listen(m, "127.0.0.1:0", &port), 0);
  assert_true(port != 0);
  assert_int_equal(ratchet_metrics_port(m), port);
  assert_int_equal(ratchet_metrics_listen(m, "127.0.0.1:0", NULL), -EALREADY);
  assert_int_equal(ratchet_metrics_listen(m, "nowhere:1", NULL), -EINVAL);

  /* The port is taken: a second server says so. */
  ratchet_metrics *m2;
  assert_int_equal(ratchet_metrics_new(t->o, &m2), 0);
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)port);
  assert_int_equal(ratchet_metrics_listen(m2, addr, NULL), -EADDRINUSE);
  ratchet_metrics_free(m2);

  /* Scrapes from another thread while the loop runs tasks. */
  scraper sc = {.port = port, .rounds = 20, .ok = 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, scrape_loop, &sc), 0);
  for (int i = 0; i < 100; i++)
    submit(t, "echo", "s");
  /* The scrapes need nothing of the loop: the last ones may come after
   * the tasks are done. */
  ot_run_until(t, ot_p_done, 100);
  pthread_join(th, NULL);
  assert_int_equal(sc.ok, sc.rounds);

  http_reply r = http(port, "GET", "/metrics");
  assert_int_equal(r.status, 200);
  assert_true(strncmp(r.content_type, "text/plain; version=0.0.4", 25) == 0);
  assert_string_equal(r.content_type, RATCHET_METRICS_CONTENT_TYPE);
  assert_int_equal(
      value(r.body,
            "ratchet_tasks_completed_total{kind=\"echo\",status=\"ok\"}"),
      100);
  promtool_check(r.body);
  free(r.body);

  r = http(port, "HEAD", "/metrics");
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "");
  free(r.body);
  r = http(port, "GET", "/");
  assert_int_equal(r.status, 404);
  free(r.body);
  r = http(port, "GET", "/metrics/x");
  assert_int_equal(r.status, 404);
  free(r.body);
  r = http(port, "POST", "/metrics");
  assert_int_equal(r.status, 405);
  free(r.body);

  /* Stopped: nothing listens, nothing is left open; it can start again. */
  ratchet_metrics_stop(m);
  assert_int_equal(ratchet_metrics_port(m), 0);
  r = http(port, "GET", "/metrics");
  assert_int_equal(r.status, 0);
  assert_int_equal(tu_count_fds(), fds);
  assert_int_equal(ratchet_metrics_listen(m, ":0", &port), 0);
  r = http(port, "GET", "/metrics");
  assert_int_equal(r.status, 200);
  free(r.body);

  /* Detached while serving: scrapes go on, with the final numbers. */
  assert_int_equal(ratchet_metrics_detach(m), 0);
  r = http(port, "GET", "/metrics");
  assert_int_equal(r.status, 200);
  assert_int_equal(
      value(r.body,
            "ratchet_tasks_completed_total{kind=\"echo\",status=\"ok\"}"),
      100);
  free(r.body);
  ratchet_metrics_free(m); /* stops the server */
  ot_close(t);
}

int test_metrics(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_render_after_run),
      cmocka_unit_test(test_workers_and_breaker),
      cmocka_unit_test(test_empty_render),
      cmocka_unit_test(test_render_enomem),
      cmocka_unit_test(test_write_file),
      cmocka_unit_test(test_parse_listen),
      cmocka_unit_test(test_http),
  };
  return cmocka_run_group_tests_name("metrics", tests, tu_uv_signal_setup,
                                     NULL);
}
