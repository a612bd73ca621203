/*
 * run_options.c - parses and checks the command line of `ratchet run`
 * (run_options.h).
 *
 * One function, apply(), turns an option and its value into fields; the
 * command line and the config file both go through it, so an option means
 * the same in both places. Parsing runs in three steps: a first scan of the
 * options only looks for --config (and reports any bad option); the config
 * file is applied; a second scan applies the command line, overriding the
 * file. Then the operands are split into COMMAND and ::: inputs, and the
 * rules that involve several options are checked last.
 */
#include "run_options.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config_file.h"
#include "duration.h"
#include "ratchet/alloc.h"
#include "ratchet/metrics.h"
#include "sbuf.h"

enum {
  OPT_HELP = 1,
  OPT_JOBS,
  OPT_RETRIES,
  OPT_BACKOFF,
  OPT_BACKOFF_BASE,
  OPT_BACKOFF_MAX,
  OPT_JITTER,
  OPT_TIMEOUT,
  OPT_KILL_GRACE,
  OPT_BREAKER,
  OPT_HALT,
  OPT_CACHE,
  OPT_CACHE_ENV,
  OPT_CACHE_TTL,
  OPT_JOBLOG,
  OPT_RESUME,
  OPT_RESUME_FAILED,
  OPT_DEAD_LETTER,
  OPT_JSON,
  OPT_PROGRESS,
  OPT_QUIET,
  OPT_KEEP_ORDER,
  OPT_TAG,
  OPT_SHELL,
  OPT_NULL,
  OPT_COLSEP,
  OPT_LINK,
  OPT_ARG_FILE,
  OPT_PLUGIN,
  OPT_KIND,
  OPT_CONFIG,
  OPT_DRY_RUN,
  OPT_OUTPUT_BUFFER,
  OPT_TRACE,
  OPT_REPORT,
  OPT_LOG_LEVEL,
  OPT_LOG_FORMAT,
  OPT_METRICS_FILE,
  OPT_METRICS_INTERVAL,
  OPT_METRICS_LISTEN
};

/* clang-format off */
static const cli_opt_def defs[] = {
  {"help", 'h', CLI_ARG_NONE, OPT_HELP, NULL, "show this help"},
  {"jobs", 'j', CLI_ARG_REQUIRED, OPT_JOBS, "N",
   "tasks at once: N, N% of the CPUs, +N or -N CPUs [CPUs]"},
  {"retries", 0, CLI_ARG_REQUIRED, OPT_RETRIES, "N",
   "retry a failed task up to N more times [0]"},
  {"backoff", 0, CLI_ARG_REQUIRED, OPT_BACKOFF, "KIND",
   "exp, linear, constant or decorrelated [exp]"},
  {"backoff-base", 0, CLI_ARG_REQUIRED, OPT_BACKOFF_BASE, "DURATION",
   "first retry delay [100ms]"},
  {"backoff-max", 0, CLI_ARG_REQUIRED, OPT_BACKOFF_MAX, "DURATION",
   "longest retry delay [30s]"},
  {"jitter", 0, CLI_ARG_REQUIRED, OPT_JITTER, "KIND",
   "full, equal, none or P% [full]"},
  {"timeout", 0, CLI_ARG_REQUIRED, OPT_TIMEOUT, "DURATION",
   "time limit of one attempt (0: none) [0]"},
  {"kill-grace", 0, CLI_ARG_REQUIRED, OPT_KILL_GRACE, "DURATION",
   "from SIGTERM to SIGKILL of a task's process group [2s]"},
  {"breaker", 0, CLI_ARG_REQUIRED, OPT_BREAKER, "SPEC",
   "stop launching when too many fail, e.g. rate=50%,window=20 [off]"},
  {"halt", 0, CLI_ARG_REQUIRED, OPT_HALT, "WHEN,COND",
   "now|soon,fail=N|fail=P%|success=N|done=N [never]"},
  {"cache", 0, CLI_ARG_OPTIONAL, OPT_CACHE, "DIR",
   "reuse results of commands that already succeeded"},
  {"cache-env", 0, CLI_ARG_REQUIRED, OPT_CACHE_ENV, "VAR",
   "make the cache key depend on $VAR too (repeatable)"},
  {"cache-ttl", 0, CLI_ARG_REQUIRED, OPT_CACHE_TTL, "DURATION",
   "cached results expire after DURATION [never]"},
  {"joblog", 0, CLI_ARG_REQUIRED, OPT_JOBLOG, "FILE",
   "log each finished task (GNU parallel's columns)"},
  {"resume", 0, CLI_ARG_NONE, OPT_RESUME, NULL,
   "skip tasks the job log records as finished"},
  {"resume-failed", 0, CLI_ARG_NONE, OPT_RESUME_FAILED, NULL,
   "skip tasks the job log records as succeeded"},
  {"dead-letter", 0, CLI_ARG_REQUIRED, OPT_DEAD_LETTER, "FILE",
   "append final failures to FILE as JSON lines"},
  {"json", 0, CLI_ARG_NONE, OPT_JSON, NULL,
   "one JSON object per task on stdout"},
  {"progress", 0, CLI_ARG_NONE, OPT_PROGRESS, NULL,
   "show progress on stderr [on a terminal]"},
  {"quiet", 0, CLI_ARG_NONE, OPT_QUIET, NULL,
   "no progress, summary or warnings"},
  {"keep-order", 'k', CLI_ARG_NONE, OPT_KEEP_ORDER, NULL,
   "print outputs in input order"},
  {"tag", 0, CLI_ARG_NONE, OPT_TAG, NULL,
   "prefix each output line with the input and a tab"},
  {"shell", 0, CLI_ARG_NONE, OPT_SHELL, NULL,
   "run COMMAND with /bin/sh -c (inputs are quoted)"},
  {"null", '0', CLI_ARG_NONE, OPT_NULL, NULL,
   "inputs are separated by NUL bytes, not newlines"},
  {"colsep", 0, CLI_ARG_REQUIRED, OPT_COLSEP, "SEP",
   "split each input at SEP into {1} {2} ... (\\t: a tab)"},
  {"link", 0, CLI_ARG_NONE, OPT_LINK, NULL,
   "take the ::: lists side by side, shorter ones starting over"},
  {"arg-file", 'a', CLI_ARG_REQUIRED, OPT_ARG_FILE, "FILE",
   "read inputs from FILE instead of stdin"},
  {"plugin", 0, CLI_ARG_REQUIRED, OPT_PLUGIN, "FILE.so",
   "load handlers from FILE.so into the workers (with --kind)"},
  {"kind", 0, CLI_ARG_REQUIRED, OPT_KIND, "NAME",
   "run the plugin's handler NAME on each input instead of a command"},
  {"config", 0, CLI_ARG_REQUIRED, OPT_CONFIG, "FILE",
   "read options from FILE ('option = value' lines)"},
  {"dry-run", 0, CLI_ARG_NONE, OPT_DRY_RUN, NULL,
   "print the commands that would run, run nothing"},
  {"output-buffer", 0, CLI_ARG_REQUIRED, OPT_OUTPUT_BUFFER, "SIZE",
   "memory for each task's stdout and stderr, then a temp file [16M]"},
  {"trace", 0, CLI_ARG_REQUIRED, OPT_TRACE, "FILE",
   "write a Chrome/Perfetto trace of the attempts to FILE at the end"},
  {"report", 0, CLI_ARG_REQUIRED, OPT_REPORT, "FILE.html",
   "write a self-contained HTML report of the run to FILE at the end"},
  {"log-level", 0, CLI_ARG_REQUIRED, OPT_LOG_LEVEL, "LEVEL",
   "debug, info, warn or error [warn; error with --quiet]"},
  {"log-format", 0, CLI_ARG_REQUIRED, OPT_LOG_FORMAT, "FORMAT",
   "text or json (one object per line) [text]"},
  {"metrics-file", 0, CLI_ARG_REQUIRED, OPT_METRICS_FILE, "PATH",
   "write Prometheus metrics to PATH (atomically) as the run goes"},
  {"metrics-interval", 0, CLI_ARG_REQUIRED, OPT_METRICS_INTERVAL, "DURATION",
   "how often --metrics-file is rewritten [5s]"},
  {"metrics-listen", 0, CLI_ARG_REQUIRED, OPT_METRICS_LISTEN, "ADDR:PORT",
   "serve /metrics over HTTP; PORT alone means 127.0.0.1:PORT"},
};
/* clang-format on */

const cli_opt_def *cli_run_option_defs(size_t *n) {
  *n = sizeof defs / sizeof *defs;
  return defs;
}

static uint32_t online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1u : n > (long)CLI_JOBS_MAX ? CLI_JOBS_MAX : (uint32_t)n;
}

void cli_run_options_init(cli_run_options *o) {
  static const cli_breaker_spec breaker = CLI_BREAKER_SPEC_INIT;
  static const cli_halt halt = CLI_HALT_INIT;
  memset(o, 0, sizeof *o);
  o->jobs = online_cpus();
  o->backoff = CLI_BACKOFF_EXPONENTIAL;
  o->backoff_base_ns = UINT64_C(100000000);
  o->backoff_max_ns = UINT64_C(30000000000);
  o->jitter.kind = CLI_JITTER_FULL;
  o->kill_grace_ns = UINT64_C(2000000000);
  o->breaker = breaker;
  o->halt = halt;
  o->output_buffer = UINT64_C(16) << 20;
  o->log_level = CLI_LOG_WARN;
  o->log_format = CLI_LOG_TEXT;
  o->metrics_interval_ns = UINT64_C(5000000000);
}

static void free_strv(char **v, size_t n) {
  if (v == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    ratchet_free(v[i]);
  ratchet_free(v);
}

void cli_run_options_free(cli_run_options *o) {
  ratchet_free(o->cache_dir);
  free_strv(o->cache_env, o->n_cache_env);
  ratchet_free(o->joblog);
  ratchet_free(o->dead_letter);
  ratchet_free(o->trace);
  ratchet_free(o->report);
  ratchet_free(o->metrics_file);
  ratchet_free(o->metrics_listen);
  ratchet_free(o->plugin);
  ratchet_free(o->kind);
  ratchet_free(o->config);
  ratchet_free(o->arg_file);
  ratchet_free(o->colsep);
  free_strv(o->inputs, o->n_inputs);
  ratchet_free(o->groups);
  free_strv(o->command, o->n_command);
  cli_run_options_init(o);
}

/* Replaces *slot with a copy of v. */
static int set_str(char **slot, const char *v) {
  char *c = cli_strdup(v);
  if (c == NULL)
    return -ENOMEM;
  ratchet_free(*slot);
  *slot = c;
  return 0;
}

/* Appends a copy of v to a string vector, keeping a NULL after the end. */
static int push_str(char ***v, size_t *n, const char *s) {
  char **nv = ratchet_realloc(*v, (*n + 2) * sizeof *nv);
  if (nv == NULL)
    return -ENOMEM;
  *v = nv;
  nv[*n] = cli_strdup(s);
  if (nv[*n] == NULL) {
    nv[*n] = NULL;
    return -ENOMEM;
  }
  (*n)++;
  nv[*n] = NULL;
  return 0;
}

static int parse_jobs(const char *flag, const char *v, uint32_t *jobs,
                      cli_err *e) {
  char show[CLI_SHOW_SIZE];
  uint64_t n;
  uint32_t cpus = online_cpus();
  size_t len = v != NULL ? strlen(v) : 0;
  long long r;
  if (len > 1 && v[len - 1] == '%') {
    /* N% of the CPUs; over 100% is fine: 200% is twice the CPUs. */
    char num[32];
    if (len >= sizeof num)
      goto bad;
    memcpy(num, v, len - 1);
    num[len - 1] = '\0';
    if (cli_parse_uint(flag, num, 1, 100 * CLI_JOBS_MAX, &n, e) != 0)
      goto bad;
    r = (long long)((uint64_t)cpus * n / 100);
  } else if (len > 1 && (v[0] == '+' || v[0] == '-')) {
    if (cli_parse_uint(flag, v + 1, 0, CLI_JOBS_MAX, &n, e) != 0)
      goto bad;
    r = v[0] == '+' ? (long long)cpus + (long long)n
                    : (long long)cpus - (long long)n;
  } else {
    if (cli_parse_uint(flag, v, 1, CLI_JOBS_MAX, &n, e) != 0)
      goto bad;
    r = (long long)n;
  }
  if (r < 1)
    r = 1;
  if (r > (long long)CLI_JOBS_MAX)
    r = CLI_JOBS_MAX;
  *jobs = (uint32_t)r;
  return 0;
bad:
  cli_err_set(e,
              "%s: invalid value '%s' (expected N from 1 to %u, N%% of the "
              "CPUs, +N or -N)",
              flag, cli_show(v, show), CLI_JOBS_MAX);
  return -EINVAL;
}

static bool valid_env_name(const char *s) {
  if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
    return false;
  for (s++; *s != '\0'; s++)
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
          (*s >= '0' && *s <= '9') || *s == '_'))
      return false;
  return true;
}

/* A path value may not be empty. */
static int check_path(const char *flag, const char *v, cli_err *e) {
  if (v == NULL || *v == '\0') {
    cli_err_set(e, "%s: the path is empty", flag);
    return -EINVAL;
  }
  return 0;
}

/* Applies one option; flag is how to name it in a message. A value of
 * NULL for an option without argument means "on"; from a config file a
 * flag may also carry a boolean value (from_config). */
static int apply(cli_run_options *o, const cli_opt_def *d, const char *flag,
                 const char *v, bool from_config, cli_err *e) {
  char show[CLI_SHOW_SIZE];
  uint64_t n;
  bool on = true;
  if (d->arg == CLI_ARG_NONE && v != NULL) {
    int b = from_config ? cli_config_bool(v) : -1;
    if (b < 0) {
      cli_err_set(e, "%s: expected true or false, got '%s'", flag,
                  cli_show(v, show));
      return -EINVAL;
    }
    on = b == 1;
  }
  if (d->arg == CLI_ARG_REQUIRED && v == NULL) {
    cli_err_set(e, "%s needs a value (%s)", flag, d->metavar);
    return -EINVAL;
  }
  switch (d->id) {
  case OPT_HELP:
    o->help = on;
    return 0;
  case OPT_JOBS:
    return parse_jobs(flag, v, &o->jobs, e);
  case OPT_RETRIES:
    if (cli_parse_uint(flag, v, 0, CLI_RETRIES_MAX, &n, e) != 0)
      return -EINVAL;
    o->retries = (uint32_t)n;
    return 0;
  case OPT_BACKOFF:
    return cli_parse_backoff_kind(flag, v, &o->backoff, e);
  case OPT_BACKOFF_BASE:
  case OPT_BACKOFF_MAX:
    if (cli_parse_duration(flag, v, &n, e) != 0)
      return -EINVAL;
    if (n == 0) {
      cli_err_set(e, "%s: '%s' must be longer than 0", flag, cli_show(v, show));
      return -EINVAL;
    }
    *(d->id == OPT_BACKOFF_BASE ? &o->backoff_base_ns : &o->backoff_max_ns) = n;
    return 0;
  case OPT_JITTER:
    if (cli_parse_jitter(flag, v, &o->jitter, e) != 0)
      return -EINVAL;
    o->jitter_given = true;
    return 0;
  case OPT_TIMEOUT:
    return cli_parse_duration(flag, v, &o->timeout_ns, e);
  case OPT_KILL_GRACE:
    return cli_parse_duration(flag, v, &o->kill_grace_ns, e);
  case OPT_BREAKER:
    return cli_parse_breaker(flag, v, &o->breaker, e);
  case OPT_HALT:
    return cli_parse_halt(flag, v, &o->halt, e);
  case OPT_CACHE:
    o->cache = true;
    if (v == NULL)
      return 0;
    if (check_path(flag, v, e) != 0)
      return -EINVAL;
    return set_str(&o->cache_dir, v);
  case OPT_CACHE_ENV:
    if (!valid_env_name(v)) {
      cli_err_set(e,
                  "%s: '%s' is not an environment variable name (letters, "
                  "digits and _, not starting with a digit)",
                  flag, cli_show(v, show));
      return -EINVAL;
    }
    for (size_t i = 0; i < o->n_cache_env; i++)
      if (strcmp(o->cache_env[i], v) == 0)
        return 0;
    return push_str(&o->cache_env, &o->n_cache_env, v);
  case OPT_CACHE_TTL:
    if (cli_parse_duration(flag, v, &n, e) != 0)
      return -EINVAL;
    if (n == 0) {
      cli_err_set(e, "%s: '%s' must be longer than 0", flag, cli_show(v, show));
      return -EINVAL;
    }
    o->cache_ttl_ns = n;
    return 0;
  case OPT_JOBLOG:
    return check_path(flag, v, e) != 0 ? -EINVAL : set_str(&o->joblog, v);
  case OPT_RESUME:
    o->resume = on;
    return 0;
  case OPT_RESUME_FAILED:
    o->resume_failed = on;
    return 0;
  case OPT_DEAD_LETTER:
    return check_path(flag, v, e) != 0 ? -EINVAL : set_str(&o->dead_letter, v);
  case OPT_JSON:
    o->json = on;
    return 0;
  case OPT_PROGRESS:
    o->progress = on ? CLI_PROGRESS_ON : CLI_PROGRESS_OFF;
    return 0;
  case OPT_QUIET:
    o->quiet = on;
    return 0;
  case OPT_KEEP_ORDER:
    o->keep_order = on;
    return 0;
  case OPT_TAG:
    o->tag = on;
    return 0;
  case OPT_SHELL:
    o->shell = on;
    return 0;
  case OPT_NULL:
    o->null_sep = on;
    return 0;
  case OPT_LINK:
    o->link = on;
    return 0;
  case OPT_COLSEP: {
    /* A literal separator; "\t" (backslash, t) is the usual tab. */
    const char *sep = strcmp(v, "\\t") == 0 ? "\t" : v;
    if (*sep == '\0') {
      cli_err_set(e, "%s: the separator is empty", flag);
      return -EINVAL;
    }
    return set_str(&o->colsep, sep);
  }
  case OPT_ARG_FILE:
    if (check_path(flag, v, e) != 0)
      return -EINVAL;
    if (o->arg_file != NULL && !from_config) {
      cli_err_set(e,
                  "%s: given twice ('%s'); several input files are not "
                  "supported",
                  flag, cli_show(v, show));
      return -EINVAL;
    }
    o->input = CLI_INPUT_FILE;
    return set_str(&o->arg_file, v);
  case OPT_PLUGIN:
    return check_path(flag, v, e) != 0 ? -EINVAL : set_str(&o->plugin, v);
  case OPT_KIND:
    if (*v == '\0') {
      cli_err_set(e, "%s: the kind is empty", flag);
      return -EINVAL;
    }
    return set_str(&o->kind, v);
  case OPT_CONFIG:
    if (from_config) {
      cli_err_set(e, "%s: not allowed inside a config file", flag);
      return -EINVAL;
    }
    return check_path(flag, v, e) != 0 ? -EINVAL : set_str(&o->config, v);
  case OPT_DRY_RUN:
    o->dry_run = on;
    return 0;
  case OPT_OUTPUT_BUFFER:
    if (cli_parse_size(flag, v, &n, e) != 0)
      return -EINVAL;
    if (n < 4096 || n > (UINT64_C(1) << 30)) {
      cli_err_set(e, "%s: '%s' is out of range (4K to 1G)", flag,
                  cli_show(v, show));
      return -EINVAL;
    }
    o->output_buffer = n;
    return 0;
  case OPT_TRACE:
    return check_path(flag, v, e) != 0 ? -EINVAL : set_str(&o->trace, v);
  case OPT_REPORT:
    return check_path(flag, v, e) != 0 ? -EINVAL : set_str(&o->report, v);
  case OPT_LOG_LEVEL:
    if (cli_log_level_parse(flag, v, &o->log_level, e) != 0)
      return -EINVAL;
    o->log_level_given = true;
    return 0;
  case OPT_LOG_FORMAT:
    return cli_log_format_parse(flag, v, &o->log_format, e);
  case OPT_METRICS_FILE:
    return check_path(flag, v, e) != 0 ? -EINVAL : set_str(&o->metrics_file, v);
  case OPT_METRICS_INTERVAL:
    if (cli_parse_duration(flag, v, &n, e) != 0)
      return -EINVAL;
    if (n < CLI_METRICS_INTERVAL_MIN_NS) {
      cli_err_set(e, "%s: '%s' is too short (at least 100ms)", flag,
                  cli_show(v, show));
      return -EINVAL;
    }
    o->metrics_interval_ns = n;
    o->metrics_interval_given = true;
    return 0;
  case OPT_METRICS_LISTEN: {
    char host[RATCHET_METRICS_HOST_MAX];
    uint16_t port;
    if (ratchet_metrics_parse_listen(v, host, sizeof host, &port) != 0) {
      cli_err_set(e,
                  "%s: invalid address '%s' (expected PORT, :PORT, "
                  "ADDR:PORT or [ADDR6]:PORT with a numeric address or "
                  "localhost, PORT from 0 to 65535)",
                  flag, cli_show(v, show));
      return -EINVAL;
    }
    return set_str(&o->metrics_listen, v);
  }
  }
  cli_err_set(e, "%s: not handled", flag);
  return -EINVAL;
}

static int config_line(void *ctx, const char *name, const char *value,
                       unsigned line, cli_err *e) {
  char show[CLI_SHOW_SIZE];
  char flag[80];
  (void)line;
  cli_run_options *o = ctx;
  const cli_opt_def *d = cli_opt_find(defs, sizeof defs / sizeof *defs, name);
  if (d == NULL || d->id == OPT_HELP) {
    cli_err_set(e, "unknown option '%s'", cli_show(name, show));
    return -EINVAL;
  }
  snprintf(flag, sizeof flag, "--%s", name);
  return apply(o, d, flag, value, true, e);
}

/* Opens a new ::: (or :::+) list at the end of o->inputs. */
static int push_group(cli_run_options *o, bool linked) {
  cli_input_group *g =
      ratchet_realloc(o->groups, (o->n_groups + 1) * sizeof *g);
  if (g == NULL)
    return -ENOMEM;
  o->groups = g;
  g[o->n_groups++] = (cli_input_group){o->n_inputs, 0, linked};
  return 0;
}

/* Splits the operands into the command and the ::: inputs: each ::: opens
 * a list (the tasks are every combination of one value from each), each
 * :::+ a list linked to the one before it (taken side by side). */
static int take_operands(cli_run_options *o, int argc, char **argv, int first,
                         cli_err *e) {
  char show[CLI_SHOW_SIZE];
  bool in_list = false;
  int rc = 0;
  for (int i = first; rc == 0 && i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, ":::") == 0 || strcmp(a, ":::+") == 0) {
      bool linked = a[3] == '+';
      if (linked && !in_list) {
        cli_err_set(e, "':::+' links its list to the ::: list before it, "
                       "and there is none");
        return -EINVAL;
      }
      in_list = true;
      rc = push_group(o, linked);
      continue;
    }
    if (strcmp(a, "::::") == 0 || strcmp(a, "::::+") == 0) {
      cli_err_set(e, "'%s' is not supported (use ::: INPUT... or -a FILE)",
                  cli_show(a, show));
      return -EINVAL;
    }
    if (in_list) {
      rc = push_str(&o->inputs, &o->n_inputs, a);
      if (rc == 0)
        o->groups[o->n_groups - 1].n++;
    } else {
      rc = push_str(&o->command, &o->n_command, a);
    }
  }
  if (rc != 0)
    return rc;
  if (in_list) {
    if (o->arg_file != NULL) {
      cli_err_set(e, "-a/--arg-file and ::: both give inputs: use one");
      return -EINVAL;
    }
    o->input = CLI_INPUT_LIST;
  }
  return 0;
}

static int check(cli_run_options *o, cli_err *e) {
  char show[CLI_SHOW_SIZE];
  if (o->kind != NULL && (o->colsep != NULL || o->n_groups > 1)) {
    cli_err_set(e,
                "--kind gives each input to the handler as one payload: "
                "%s inputs into values, which only a COMMAND "
                "can take ({1} {2} ...)",
                o->colsep != NULL ? "--colsep splits"
                                  : "several ::: lists split");
    return -EINVAL;
  }
  if ((o->plugin == NULL) != (o->kind == NULL)) {
    cli_err_set(e, o->plugin != NULL
                       ? "--plugin needs --kind NAME (the handler to run)"
                       : "--kind needs --plugin FILE.so (where the handler "
                         "is)");
    return -EINVAL;
  }
  if (o->plugin != NULL) {
    if (o->n_command > 0) {
      cli_err_set(e,
                  "--kind runs the plugin's handler, not a command: "
                  "unexpected COMMAND '%s' (inputs go after :::)",
                  cli_show(o->command[0], show));
      return -EINVAL;
    }
    if (o->shell) {
      cli_err_set(e, "--shell cannot be used with --kind (no command runs)");
      return -EINVAL;
    }
  } else if (cli_command_template_init(&o->tmpl, o->command, o->n_command,
                                       o->shell, e) != 0) {
    return -EINVAL;
  }
  if ((o->resume || o->resume_failed) && o->joblog == NULL) {
    cli_err_set(e, "%s needs --joblog FILE (the log to resume from)",
                o->resume_failed ? "--resume-failed" : "--resume");
    return -EINVAL;
  }
  if (!o->cache && (o->n_cache_env > 0 || o->cache_ttl_ns > 0)) {
    cli_err_set(e, "%s needs --cache",
                o->n_cache_env > 0 ? "--cache-env" : "--cache-ttl");
    return -EINVAL;
  }
  if (o->metrics_interval_given && o->metrics_file == NULL) {
    cli_err_set(e, "--metrics-interval needs --metrics-file PATH");
    return -EINVAL;
  }
  if (o->backoff_max_ns < o->backoff_base_ns) {
    char a[64], b[64];
    cli_err_set(e, "--backoff-max (%s) is shorter than --backoff-base (%s)",
                cli_format_duration(o->backoff_max_ns, a),
                cli_format_duration(o->backoff_base_ns, b));
    return -EINVAL;
  }
  if (o->backoff == CLI_BACKOFF_DECORRELATED && o->jitter_given) {
    cli_err_set(e, "--jitter cannot be used with --backoff decorrelated "
                   "(its delays are random already)");
    return -EINVAL;
  }
  if (o->progress == CLI_PROGRESS_ON && o->quiet) {
    cli_err_set(e, "--progress and --quiet contradict each other");
    return -EINVAL;
  }
  if (o->quiet)
    o->progress = CLI_PROGRESS_OFF;
  /* --quiet keeps only errors, unless --log-level says otherwise. */
  if (o->quiet && !o->log_level_given)
    o->log_level = CLI_LOG_ERROR;
  if (o->json && o->tag) {
    cli_err_set(e, "--tag cannot be used with --json (the JSON objects "
                   "carry the input)");
    return -EINVAL;
  }
  return 0;
}

int cli_run_options_parse(cli_run_options *o, int argc, char **argv, int first,
                          cli_err *e) {
  const size_t ndefs = sizeof defs / sizeof *defs;
  cli_opt_scan s;
  const char *v;
  int id;
  const char *config = NULL;

  /* 1. Find --config (and -h), and refuse bad options early. */
  cli_opt_init(&s, argc, argv, first, defs, ndefs);
  while ((id = cli_opt_next(&s, &v, e)) > 0) {
    if (id == OPT_HELP) {
      o->help = true;
      return 0;
    }
    if (id == OPT_CONFIG)
      config = v;
  }
  if (id < 0)
    return id;

  /* 2. The config file. */
  if (config != NULL) {
    if (check_path("--config", config, e) != 0)
      return -EINVAL;
    int rc = cli_config_read(config, config_line, o, e);
    if (rc != 0)
      return rc;
    if ((rc = set_str(&o->config, config)) != 0)
      return rc;
  }

  /* 3. The command line, over the file. */
  cli_opt_init(&s, argc, argv, first, defs, ndefs);
  while ((id = cli_opt_next(&s, &v, e)) > 0) {
    const cli_opt_def *d = NULL;
    for (size_t i = 0; i < ndefs; i++)
      if (defs[i].id == id)
        d = &defs[i];
    if (id == OPT_CONFIG)
      continue;
    int rc = apply(o, d, s.label, v, false, e);
    if (rc != 0)
      return rc;
  }
  if (id < 0)
    return id;
  int rc = take_operands(o, argc, argv, s.index, e);
  if (rc != 0)
    return rc;
  return check(o, e);
}
