/*
 * run.h - executes `ratchet run` once its command line is parsed.
 */
#ifndef RATCHET_CLI_RUN_H
#define RATCHET_CLI_RUN_H

#include "run_options.h"

/* Runs every input of o through a pool of `ratchet worker` processes and
 * returns the exit status: 0 all succeeded, 1..100 the number of failed
 * tasks, 101 more, 130/143 after SIGINT/SIGTERM, 255 for other errors
 * (with a message on stderr). argv0 is main's argv[0]. */
int cli_run_execute(const cli_run_options *o, const char *argv0);

#endif
