/*
 * run_options.h - the whole command line of `ratchet run`, parsed and
 * checked into one struct, so that wiring it to the orchestrator is only a
 * matter of reading fields.
 *
 *   ratchet run [OPTIONS] COMMAND [ARG...] [::: INPUT...]
 *   ratchet run [OPTIONS] --plugin FILE.so --kind NAME [::: INPUT...]
 *
 * Options end at the first operand (COMMAND keeps its own flags) or "--".
 * `--config FILE` is applied first, wherever it appears, and the other
 * options of the command line override it. Every value is validated here;
 * the message of a refusal names the option (or FILE:LINE) and the value.
 * docs/cli.md documents every option; the defaults are in the comments.
 */
#ifndef RATCHET_CLI_RUN_OPTIONS_H
#define RATCHET_CLI_RUN_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff_opts.h"
#include "breaker_spec.h"
#include "command.h"
#include "diag.h"
#include "halt.h"
#include "input.h"
#include "log.h"
#include "opt.h"

typedef enum cli_progress_mode {
  CLI_PROGRESS_AUTO = 0, /* on when stderr is a terminal */
  CLI_PROGRESS_ON = 1,
  CLI_PROGRESS_OFF = 2
} cli_progress_mode;

typedef enum cli_input_source {
  CLI_INPUT_STDIN = 0, /* lines (or -0 records) of stdin */
  CLI_INPUT_FILE = 1,  /* -a FILE */
  CLI_INPUT_LIST = 2   /* ::: INPUT... */
} cli_input_source;

/* The limits of the numeric options. */
#define CLI_JOBS_MAX    4096u
#define CLI_RETRIES_MAX 1000u
/* --metrics-interval: each write renders, fsyncs and renames a file. */
#define CLI_METRICS_INTERVAL_MIN_NS UINT64_C(100000000)

/* Every string is owned by the struct (freed by cli_run_options_free). */
typedef struct cli_run_options {
  bool help; /* -h/--help was given: print help, nothing else is checked */

  uint32_t jobs;            /* -j: default the number of online CPUs */
  uint32_t retries;         /* extra attempts after the first [0] */
  cli_backoff_kind backoff; /* [exponential] */
  uint64_t backoff_base_ns; /* [100ms] */
  uint64_t backoff_max_ns;  /* [30s] */
  cli_jitter jitter;        /* [full] */
  bool jitter_given;        /* --jitter was given */
  uint64_t timeout_ns;      /* per attempt; 0: none [0] */
  uint64_t kill_grace_ns;   /* TERM to KILL [2s] */
  cli_breaker_spec breaker; /* [off] */
  cli_halt halt;            /* [never] */

  bool cache;       /* --cache[=DIR] */
  char *cache_dir;  /* NULL: ratchet_store_default_dir() */
  char **cache_env; /* --cache-env VAR, in order, no duplicates */
  size_t n_cache_env;
  uint64_t cache_ttl_ns; /* 0: entries never expire [0] */

  char *joblog;       /* NULL: none */
  bool resume;        /* skip tasks the job log records */
  bool resume_failed; /* skip only those it records as succeeded */
  char *dead_letter;  /* JSON lines of final failures; NULL: none */

  char *metrics_file;           /* Prometheus text, replaced atomically */
  uint64_t metrics_interval_ns; /* between metrics file writes [5s] */
  bool metrics_interval_given;
  char *metrics_listen; /* ADDR:PORT serving /metrics; NULL: none */

  char *trace;               /* --trace FILE: Chrome trace JSON; NULL */
  char *report;              /* --report FILE: the HTML report; NULL */
  cli_log_level log_level;   /* [warn; error with --quiet] */
  bool log_level_given;      /* --log-level was given */
  cli_log_format log_format; /* [text] */

  bool json; /* one JSON object per task on stdout */
  cli_progress_mode progress;
  bool quiet;             /* no progress, no summary, no warnings */
  bool keep_order;        /* -k: print in input order */
  bool tag;               /* prefix output lines with the input and a tab */
  bool shell;             /* run the command with /bin/sh -c */
  bool null_sep;          /* -0: inputs are NUL-separated */
  bool dry_run;           /* print the commands instead of running them */
  uint64_t output_buffer; /* bytes of each stream kept in memory [16M] */

  char *plugin; /* --plugin FILE.so; with kind */
  char *kind;   /* --kind NAME */
  char *config; /* --config FILE, NULL: none */

  cli_input_source input;
  char *arg_file; /* -a FILE ("-": stdin) */
  char **inputs;  /* ::: INPUT..., every list after the other, owned */
  size_t n_inputs;
  cli_input_group *groups; /* one per ::: or :::+ list, owned */
  size_t n_groups;
  char *colsep; /* --colsep SEP: a line's values are split at SEP; NULL */
  bool link;    /* --link: the ::: lists side by side, shorter ones wrap */

  char **command; /* COMMAND [ARG...], owned, NULL-terminated */
  size_t n_command;
  cli_command_template tmpl; /* checked template over command (not with
                                plugin) */
} cli_run_options;

/* Sets every default (jobs from sysconf). */
void cli_run_options_init(cli_run_options *o);

/*
 * Parses argv[first..argc-1] (what follows "run") into o, which must have
 * been initialised. Returns 0 (o->help set if help was asked for); -EINVAL
 * or another negated errno with the message in e. On failure o holds a
 * partial result that must still be freed.
 */
int cli_run_options_parse(cli_run_options *o, int argc, char **argv, int first,
                          cli_err *e);

/* Frees what o owns and leaves it initialised-empty. */
void cli_run_options_free(cli_run_options *o);

/* The option table, for help and docs. */
const cli_opt_def *cli_run_option_defs(size_t *n);

#endif
