/*
 * command.c - turns the template of `ratchet run` and one input into the
 * argv a worker executes (command.h). The decision to use a shell is made
 * once per run from the template alone, never from an input, so that an
 * input full of metacharacters cannot change how the command is run.
 */
#include "command.h"

#include <errno.h>
#include <string.h>

#include "placeholder.h"
#include "ratchet/alloc.h"
#include "sbuf.h"

bool cli_needs_shell(const char *s) {
  return strpbrk(s, " \t\n\r\v\f'\"|&;<>()$`\\*?[]#~") != NULL;
}

int cli_command_template_init(cli_command_template *t, char *const *tokens,
                              size_t ntokens, bool force_shell, cli_err *e) {
  memset(t, 0, sizeof *t);
  if (ntokens == 0) {
    cli_err_set(e, "no COMMAND given (usage: ratchet run [OPTIONS] COMMAND "
                   "[ARG...] [::: INPUT...])");
    return -EINVAL;
  }
  if (tokens[0][0] == '\0') {
    cli_err_set(e, "the COMMAND is an empty string");
    return -EINVAL;
  }
  t->tokens = tokens;
  t->ntokens = ntokens;
  t->shell = force_shell || (ntokens == 1 && cli_needs_shell(tokens[0]));
  for (size_t i = 0; i < ntokens; i++)
    if (cli_has_placeholder(tokens[i]))
      t->has_placeholder = true;
  return 0;
}

void cli_command_free(cli_command *c) {
  if (c->argv != NULL)
    for (size_t i = 0; i < c->argc; i++)
      ratchet_free(c->argv[i]);
  ratchet_free(c->argv);
  ratchet_free(c->display);
  memset(c, 0, sizeof *c);
}

/* Without a placeholder the input is appended: each of its values as an
 * argument of its own. */
static size_t n_appended(const cli_command_template *t, const cli_values *v) {
  if (t->has_placeholder)
    return 0;
  return v->fields != NULL && v->n > 0 ? v->n : 1;
}

static const char *appended(const cli_values *v, size_t k) {
  return v->fields != NULL && v->n > 0 ? v->fields[k] : v->all;
}

static int expand_shell(const cli_command_template *t, const cli_values *v,
                        uint64_t seq, cli_command *out) {
  cli_sbuf b = CLI_SBUF_INIT;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < t->ntokens; i++) {
    if (i > 0)
      rc = cli_sbuf_addc(&b, ' ');
    if (rc == 0)
      rc = cli_expand_values(&b, t->tokens[i], v, seq, true);
  }
  for (size_t k = 0, n = n_appended(t, v); rc == 0 && k < n; k++) {
    rc = cli_sbuf_addc(&b, ' ');
    if (rc == 0)
      rc = cli_shell_quote(&b, appended(v, k));
  }
  out->argv = ratchet_calloc(2, sizeof *out->argv);
  char *script = rc == 0 ? cli_sbuf_take(&b) : NULL;
  out->display = script != NULL ? cli_strdup(script) : NULL;
  cli_sbuf_free(&b);
  if (out->argv == NULL || script == NULL || out->display == NULL) {
    ratchet_free(script);
    return -ENOMEM;
  }
  out->argv[0] = script;
  out->argc = 1;
  return 0;
}

/* How many arguments token i becomes: one per value for an argument that
 * is exactly {} (or a slice of it) when the input has several values. */
static size_t token_args(const cli_command_template *t, size_t i,
                         const cli_values *v) {
  bool several = v->fields != NULL && v->n > 0;
  return several && cli_is_value_placeholder(t->tokens[i]) ? v->n : 1;
}

/* Adds argument s (taken) to out and its quoted form to disp. */
static int add_arg(cli_command *out, cli_sbuf *disp, char *s) {
  int rc = s != NULL ? 0 : -ENOMEM;
  if (rc == 0 && out->argc > 0)
    rc = cli_sbuf_addc(disp, ' ');
  if (rc == 0)
    rc = cli_shell_quote(disp, s);
  if (rc != 0) {
    ratchet_free(s);
    return -ENOMEM;
  }
  out->argv[out->argc++] = s;
  return 0;
}

static int expand_exec(const cli_command_template *t, const cli_values *v,
                       uint64_t seq, cli_command *out) {
  size_t argc = n_appended(t, v);
  for (size_t i = 0; i < t->ntokens; i++)
    argc += token_args(t, i, v);
  out->argv = ratchet_calloc(argc + 1, sizeof *out->argv);
  if (out->argv == NULL)
    return -ENOMEM;
  cli_sbuf b = CLI_SBUF_INIT;
  cli_sbuf disp = CLI_SBUF_INIT;
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < t->ntokens; i++) {
    size_t n = token_args(t, i, v);
    for (size_t k = 0; rc == 0 && k < n; k++) {
      cli_values one = cli_values_one(n > 1 ? v->fields[k] : v->all);
      rc = cli_expand_values(&b, t->tokens[i], n > 1 ? &one : v, seq, false);
      if (rc == 0)
        rc = add_arg(out, &disp, cli_sbuf_take(&b));
    }
  }
  for (size_t k = 0, n = n_appended(t, v); rc == 0 && k < n; k++)
    rc = add_arg(out, &disp, cli_strdup(appended(v, k)));
  if (rc == 0) {
    out->display = cli_sbuf_take(&disp);
    if (out->display == NULL)
      rc = -ENOMEM;
  }
  cli_sbuf_free(&b);
  cli_sbuf_free(&disp);
  return rc;
}

int cli_command_expand(const cli_command_template *t, const char *input,
                       uint64_t seq, cli_command *out) {
  cli_values v = cli_values_one(input);
  return cli_command_expand_values(t, &v, seq, out);
}

int cli_command_expand_values(const cli_command_template *t,
                              const cli_values *v, uint64_t seq,
                              cli_command *out) {
  memset(out, 0, sizeof *out);
  out->shell = t->shell;
  int rc =
      t->shell ? expand_shell(t, v, seq, out) : expand_exec(t, v, seq, out);
  if (rc != 0)
    cli_command_free(out);
  return rc;
}
