/*
 * run_job.c - builds a task from an input (run_job.h).
 *
 * A command's payload is a ratchet.v1.ExecRequest packed with protobuf-c:
 * argv exactly as command.c expanded it (never re-split: an input with
 * blanks, quotes or newlines stays one argument, and only a script made
 * from the template goes through /bin/sh, with every input quoted), the
 * kill grace and the memory kept per stream before spilling. The cache key
 * does not hash the packed request: it would change with --kill-grace or
 * --output-buffer, which do not change what the command computes. It
 * hashes the kind, the argv (each argument with its length, so "a b" and
 * "a","b" differ) and the shell flag, the input, and each --cache-env
 * variable (an unset one is left out, so setting it later is a miss).
 */
#include "run_job.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "command.h"
#include "input.h"
#include "ratchet/alloc.h"
#include "ratchet/ratchet.pb-c.h"
#include "sbuf.h"

void cli_job_free(cli_job *j) {
  if (j == NULL)
    return;
  ratchet_free(j->input);
  ratchet_free(j->display);
  ratchet_free(j->payload);
  memset(j, 0, sizeof *j);
}

static int pack_exec(const cli_run_options *o, const cli_command *c,
                     cli_job *j) {
  Ratchet__V1__ExecRequest rq;
  ratchet__v1__exec_request__init(&rq);
  rq.n_argv = c->argc;
  rq.argv = c->argv;
  rq.use_shell = c->shell;
  uint64_t grace_ms = o->kill_grace_ns / 1000000u;
  rq.kill_grace_ms = grace_ms == 0           ? 1
                     : grace_ms > UINT32_MAX ? UINT32_MAX
                                             : (uint32_t)grace_ms;
  rq.max_memory_output = o->output_buffer;
  size_t n = ratchet__v1__exec_request__get_packed_size(&rq);
  j->payload = ratchet_malloc(n ? n : 1);
  if (j->payload == NULL)
    return -ENOMEM;
  j->payload_len = ratchet__v1__exec_request__pack(&rq, j->payload);
  return 0;
}

/* The bytes that stand for the command in its cache key. */
static int key_command(cli_sbuf *b, const cli_command *c) {
  int rc = cli_sbuf_adds(b, c->shell ? "sh\n" : "argv\n");
  for (size_t i = 0; rc == 0 && i < c->argc; i++) {
    char len[32];
    size_t l = strlen(c->argv[i]);
    int k = snprintf(len, sizeof len, "%zu:", l);
    rc = cli_sbuf_add(b, len, (size_t)k);
    if (rc == 0)
      rc = cli_sbuf_add(b, c->argv[i], l);
  }
  return rc;
}

static int make_key(const cli_values *v, const cli_job_env *env,
                    ratchet_key_builder *kb, const char *kind, const void *cmd,
                    size_t cmd_len, const char *rec, size_t len,
                    ratchet_cache_key *key) {
  ratchet_key_builder_reset(kb);
  int rc = ratchet_key_add_kind(kb, kind);
  if (rc == 0)
    rc = ratchet_key_add_payload(kb, cmd, cmd_len);
  if (rc == 0)
    rc = ratchet_key_add_input(kb, "input", rec, len);
  /* Each value on its own: "a b" + "c" and "a" + "b c" join alike. */
  for (size_t i = 0; rc == 0 && v->fields != NULL && i < v->n; i++) {
    char name[32];
    snprintf(name, sizeof name, "value%zu", i + 1);
    rc = ratchet_key_add_input(kb, name, v->fields[i], strlen(v->fields[i]));
  }
  for (size_t i = 0; rc == 0 && env != NULL && i < env->n; i++)
    rc = ratchet_key_add_env(kb, env->names[i], env->values[i]);
  if (rc == 0)
    rc = ratchet_key_finish(kb, key);
  return rc;
}

int cli_job_build(const cli_run_options *o, const cli_job_env *env,
                  ratchet_key_builder *kb, const char *rec, size_t len,
                  uint64_t seq, cli_job *j) {
  return cli_job_build_fields(o, env, kb, rec, len, NULL, 0, seq, j);
}

int cli_job_build_fields(const cli_run_options *o, const cli_job_env *env,
                         ratchet_key_builder *kb, const char *rec, size_t len,
                         const char *const *fields, size_t n, uint64_t seq,
                         cli_job *j) {
  memset(j, 0, sizeof *j);
  j->seq = seq;
  j->input = ratchet_malloc(len + 1);
  if (j->input == NULL)
    return -ENOMEM;
  memcpy(j->input, rec, len);
  j->input[len] = '\0';
  cli_values v = {j->input, fields, n};
  int rc;
  if (o->kind != NULL) {
    cli_sbuf d = CLI_SBUF_INIT;
    rc = cli_sbuf_adds(&d, o->kind);
    if (rc == 0)
      rc = cli_sbuf_addc(&d, ' ');
    if (rc == 0)
      rc = cli_sbuf_add(&d, rec, len);
    j->display = rc == 0 ? cli_sbuf_take(&d) : NULL;
    cli_sbuf_free(&d);
    j->payload = ratchet_malloc(len ? len : 1);
    if (j->display == NULL || j->payload == NULL) {
      cli_job_free(j);
      return -ENOMEM;
    }
    memcpy(j->payload, rec, len);
    j->payload_len = len;
    if (o->cache) {
      if (make_key(&v, env, kb, o->kind, rec, len, rec, len, &j->key) != 0) {
        cli_job_free(j);
        return -ENOMEM;
      }
      j->has_key = true;
    }
    return 0;
  }
  cli_command c;
  if ((rc = cli_command_expand_values(&o->tmpl, &v, seq, &c)) != 0) {
    cli_job_free(j);
    return rc;
  }
  j->display = c.display;
  c.display = NULL;
  rc = pack_exec(o, &c, j);
  if (rc == 0 && o->cache) {
    cli_sbuf b = CLI_SBUF_INIT;
    rc = key_command(&b, &c);
    if (rc == 0)
      rc = make_key(&v, env, kb, "exec", b.data, b.len, rec, len, &j->key);
    j->has_key = rc == 0;
    cli_sbuf_free(&b);
  }
  cli_command_free(&c);
  if (rc != 0) {
    cli_job_free(j);
    return -ENOMEM;
  }
  return 0;
}

int cli_job_open_input(const cli_run_options *o, cli_input **out, cli_err *e) {
  const char sep = o->null_sep ? '\0' : '\n';
  int rc;
  *out = NULL;
  if (o->input == CLI_INPUT_LIST)
    rc = cli_input_from_lists(o->inputs, o->groups, o->n_groups, o->link, out);
  else if (o->input == CLI_INPUT_FILE)
    rc = cli_input_from_file("-a", o->arg_file, sep, out, e);
  else
    rc = cli_input_from_fd(0, false, sep, "stdin", out);
  if (rc == 0 && o->colsep != NULL &&
      (rc = cli_input_set_colsep(*out, o->colsep)) != 0) {
    cli_input_free(*out);
    *out = NULL;
  }
  if (rc == -ENOMEM)
    cli_err_set(e, "out of memory");
  return rc;
}
