/*
 * cmd_run.c - `ratchet run`: parses the command line (run_options.c) and
 * runs the tasks (run.c). --dry-run runs nothing: it prints the command
 * each input would run (with --resume, only those still to do), as GNU
 * parallel's --dry-run does.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "command.h"
#include "diag.h"
#include "input.h"
#include "joblog.h"
#include "run.h"
#include "run_job.h"
#include "run_options.h"

static void run_help(FILE *f) {
  size_t n;
  const cli_opt_def *d = cli_run_option_defs(&n);
  fprintf(f, "usage: ratchet run [OPTIONS] COMMAND [ARG...] [::: INPUT...]\n"
             "       ratchet run [OPTIONS] --plugin FILE.so --kind NAME [::: "
             "INPUT...]\n"
             "\n"
             "Runs COMMAND once per input: the arguments after :::, else the "
             "lines of\nstdin (or of -a FILE; NUL-separated with -0). "
             "Placeholders in COMMAND:\n{} input, {.} without extension, {/} "
             "base name, {//} directory, {/.} base\nname without extension, "
             "{#} sequence number; without any, the input is\nappended. "
             "Several ::: lists run every combination (:::+ links a list\nto "
             "the one before); {1} {2} ... are their values, or the columns "
             "of\n--colsep. No "
             "shell is used unless COMMAND is one argument with shell syntax\n"
             "or --shell is given; inputs are then quoted.\n\n");
  cli_opt_print_help(d, n, f);
  fprintf(f, "\nDURATION: 250ms, 2s, 1m30s, 1h, or a number of seconds. "
             "SIZE: 64K, 16M, 1G.\nExit status: 0 all succeeded, 1-100 the "
             "number of failed tasks, 101 more,\n255 usage or other errors, "
             "130 after SIGINT, 143 after SIGTERM.\n");
}

/* Prints the command of every input still to run. */
static int dry_run(const cli_run_options *o, cli_err *e) {
  cli_input *in = NULL;
  cli_joblog_state *done = NULL;
  int rc = cli_job_open_input(o, &in, e);
  if (rc != 0)
    return rc;
  if ((o->resume || o->resume_failed) &&
      (rc = cli_joblog_read("--joblog", o->joblog, &done, e)) != 0) {
    cli_input_free(in);
    return rc;
  }
  const char *rec;
  size_t len;
  while ((rc = cli_input_next(in, &rec, &len, e)) == 1) {
    uint64_t seq = cli_input_count(in);
    if (done != NULL && cli_joblog_skip(done, seq, o->resume_failed))
      continue;
    if (o->kind != NULL) {
      printf("%s %s\n", o->kind, rec);
      continue;
    }
    const char *const *fields;
    size_t nf;
    cli_input_fields(in, &fields, &nf);
    cli_values v = {rec, fields, nf};
    cli_command c;
    if ((rc = cli_command_expand_values(&o->tmpl, &v, seq, &c)) != 0)
      break;
    printf("%s\n", c.display);
    cli_command_free(&c);
  }
  cli_joblog_state_free(done);
  cli_input_free(in);
  if (rc == -ENOMEM)
    cli_err_set(e, "out of memory");
  return rc < 0 ? rc : 0;
}

int cli_cmd_run(int argc, char **argv) {
  cli_run_options o;
  cli_err e = {{0}};
  cli_run_options_init(&o);
  int rc = cli_run_options_parse(&o, argc, argv, 2, &e);
  int status = CLI_EXIT_OK;
  if (rc != 0) {
    fprintf(stderr, "ratchet run: %s\n", e.msg);
    status = CLI_EXIT_USAGE;
  } else if (o.help) {
    run_help(stdout);
  } else if (o.dry_run) {
    if (dry_run(&o, &e) != 0) {
      fprintf(stderr, "ratchet run: %s\n", e.msg);
      status = CLI_EXIT_USAGE;
    }
  } else {
    status = cli_run_execute(&o, argv[0]);
  }
  fflush(stdout);
  cli_run_options_free(&o);
  return status;
}
