/*
 * run_job.h - one input of `ratchet run` turned into what the
 * orchestrator needs: the task's payload, the command's display form for
 * logs, and its cache key.
 */
#ifndef RATCHET_CLI_RUN_JOB_H
#define RATCHET_CLI_RUN_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/key.h"
#include "run_options.h"

/* Everything owned (cli_job_free). */
typedef struct cli_job {
  uint64_t seq;
  char *input;   /* the record, NUL-terminated */
  char *display; /* the command as a shell would read it */
  uint8_t *payload;
  size_t payload_len;
  bool has_key; /* with --cache */
  ratchet_cache_key key;
} cli_job;

/* The environment values --cache-env names, read once per run. */
typedef struct cli_job_env {
  const char *const *names;
  const char **values; /* NULL: unset */
  size_t n;
} cli_job_env;

/*
 * Builds the job of record rec (len bytes) with sequence number seq: for a
 * command, the ExecRequest (argv after placeholders and the shell rule,
 * kill grace, output memory); for --kind, the record itself. With --cache
 * the key covers the kind, the expanded command (or the record), the
 * record and the --cache-env values; kb is a scratch builder. 0, or
 * -ENOMEM (j then empty).
 */
int cli_job_build(const cli_run_options *o, const cli_job_env *env,
                  ratchet_key_builder *kb, const char *rec, size_t len,
                  uint64_t seq, cli_job *j);

/* The same for a record of several values (fields[0..n), as
 * cli_input_fields gives them; NULL and 0 for one value): placeholders
 * {1} {2} ... take them, and the cache key covers each. */
int cli_job_build_fields(const cli_run_options *o, const cli_job_env *env,
                         ratchet_key_builder *kb, const char *rec, size_t len,
                         const char *const *fields, size_t n, uint64_t seq,
                         cli_job *j);

/* Opens the run's inputs as the options say: the ::: lists, -a FILE, or
 * stdin; split with --colsep. 0 and *out; a negated errno with a message
 * in e. */
int cli_job_open_input(const cli_run_options *o, cli_input **out, cli_err *e);

/* NULL-safe; leaves j empty. */
void cli_job_free(cli_job *j);

#endif
