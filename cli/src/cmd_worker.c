/*
 * cmd_worker.c - `ratchet worker`: serves ratchet's protocol on stdin and
 * stdout (docs/protocol.md) with the built-in kinds "exec" (run a command,
 * exec.c) and "echo" (return the payload), plus the kinds of --plugin
 * shared objects (ratchet/plugin.h).
 *
 * The exec handler decodes the payload as an ExecRequest, runs it, and
 * maps the outcome onto the Result: stdout to output, the exit code, the
 * signal, and a status (OK, FAILED, TIMEOUT, CANCELLED). Stderr, spill
 * file paths and the command's own rusage need three setters the runtime's
 * worker side does not have yet (ratchet_task_set_stderr,
 * ratchet_task_set_output_files, ratchet_task_set_usage); CMake defines
 * RATCHET_CLI_HAVE_TASK_EXTRAS when ratchet/worker.h declares them. Until
 * then a spilled stdout is read back into output, and the last line of
 * stderr is quoted in the error text of a failed command.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmds.h"
#include "diag.h"
#include "exec.h"
#include "janitor.h"
#include "opt.h"
#include "plugin_load.h"
#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/ratchet.pb-c.h"
#include "ratchet/worker.h"
#include "sbuf.h"

/* The largest stdout read back into a Result without spill paths. */
#define READBACK_MAX (UINT64_C(48) << 20)
/* How much of stderr's end goes into an error text. */
#define ERR_TAIL 200

static int echo_handler(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  return ratchet_task_set_output(ctx, p, len);
}

static cli_exec_stop poll_task(void *p) {
  ratchet_task_ctx *ctx = p;
  if (!ratchet_task_cancelled(ctx))
    return CLI_EXEC_RUN;
  return ratchet_task_time_left_ms(ctx) == 0 ? CLI_EXEC_TIMEOUT
                                             : CLI_EXEC_CANCEL;
}

/* A NULL-terminated vector of "KEY=VALUE" from the request's env map. */
static char **env_vector(const Ratchet__V1__ExecRequest *rq) {
  char **v = ratchet_calloc(rq->n_env + 1, sizeof *v);
  if (v == NULL)
    return NULL;
  for (size_t i = 0; i < rq->n_env; i++) {
    const char *k = rq->env[i]->key, *val = rq->env[i]->value;
    size_t kl = strlen(k), vl = strlen(val);
    v[i] = ratchet_malloc(kl + vl + 2);
    if (v[i] == NULL) {
      for (size_t j = 0; j < i; j++)
        ratchet_free(v[j]);
      ratchet_free(v);
      return NULL;
    }
    memcpy(v[i], k, kl);
    v[i][kl] = '=';
    memcpy(v[i] + kl + 1, val, vl + 1);
  }
  return v;
}

static void free_vector(char **v) {
  if (v == NULL)
    return;
  for (char **p = v; *p != NULL; p++)
    ratchet_free(*p);
  ratchet_free(v);
}

/* The last non-empty line of what the command wrote on stderr, printable
 * ASCII only, at most ERR_TAIL bytes (for an error text). */
static void stderr_tail(const cli_exec_stream *s, char *out, size_t cap) {
  out[0] = '\0';
  if (s->path != NULL || s->mem.len == 0)
    return;
  const char *d = s->mem.data;
  size_t end = s->mem.len;
  while (end > 0 && (d[end - 1] == '\n' || d[end - 1] == '\r'))
    end--;
  size_t start = end;
  while (start > 0 && d[start - 1] != '\n' && end - start < ERR_TAIL)
    start--;
  size_t o = 0;
  for (size_t i = start; i < end && o + 1 < cap; i++) {
    unsigned char c = (unsigned char)d[i];
    out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  out[o] = '\0';
}

#ifndef RATCHET_CLI_HAVE_TASK_EXTRAS
/* Without spill paths in the protocol yet: the file comes back inline. */
static int read_back(ratchet_task_ctx *ctx, const cli_exec_stream *s) {
  if (s->total > READBACK_MAX)
    return -EFBIG;
  FILE *f = fopen(s->path, "rb");
  if (f == NULL)
    return -errno;
  char buf[65536];
  size_t n;
  int rc = ratchet_task_set_output(ctx, NULL, 0);
  while (rc == 0 && (n = fread(buf, 1, sizeof buf, f)) > 0)
    rc = ratchet_task_append_output(ctx, buf, n);
  if (rc == 0 && ferror(f))
    rc = -EIO;
  fclose(f);
  return rc;
}
#endif

/* Hands the captured streams to the Result. */
static int deliver(ratchet_task_ctx *ctx, cli_exec_result *r) {
#ifdef RATCHET_CLI_HAVE_TASK_EXTRAS
  int rc = ratchet_task_set_output(ctx, r->out.mem.data, r->out.mem.len);
  if (rc == 0)
    rc = ratchet_task_set_stderr(ctx, r->err.mem.data, r->err.mem.len);
  if (rc == 0)
    rc = ratchet_task_set_output_files(ctx, r->out.path, r->err.path);
  ratchet_task_set_usage(
      ctx,
      (uint64_t)r->usage.ru_utime.tv_sec * 1000000u +
          (uint64_t)r->usage.ru_utime.tv_usec,
      (uint64_t)r->usage.ru_stime.tv_sec * 1000000u +
          (uint64_t)r->usage.ru_stime.tv_usec,
      r->usage.ru_maxrss > 0 ? (uint64_t)r->usage.ru_maxrss : 0, r->wall_us);
  if (rc == 0) {
    /* The paths now belong to the orchestrator. */
    cli_exec_result_free(r);
  }
  return rc;
#else
  int rc = r->out.path != NULL
               ? read_back(ctx, &r->out)
               : ratchet_task_set_output(ctx, r->out.mem.data, r->out.mem.len);
  return rc;
#endif
}

static int exec_handler(void *data, ratchet_task_ctx *ctx) {
  const uint32_t default_grace = *(const uint32_t *)data;
  size_t len;
  const uint8_t *payload = ratchet_task_payload(ctx, &len);
  Ratchet__V1__ExecRequest *rq =
      ratchet__v1__exec_request__unpack(NULL, len, payload);
  if (rq == NULL) {
    ratchet_task_set_status(ctx, RATCHET_TASK_BAD_REQUEST);
    ratchet_task_set_error(ctx, "the payload is not a ratchet.v1.ExecRequest");
    return 0;
  }
  if (rq->n_argv == 0 || rq->argv[0][0] == '\0') {
    ratchet__v1__exec_request__free_unpacked(rq, NULL);
    ratchet_task_set_status(ctx, RATCHET_TASK_BAD_REQUEST);
    ratchet_task_set_error(ctx, "ExecRequest.argv is empty");
    return 0;
  }
  char **argv = ratchet_calloc(rq->n_argv + 1, sizeof *argv);
  char **env = env_vector(rq);
  char **unset = ratchet_calloc(rq->n_env_unset + 1, sizeof *unset);
  if (argv == NULL || env == NULL || unset == NULL) {
    ratchet_free(argv);
    free_vector(env);
    ratchet_free(unset);
    ratchet__v1__exec_request__free_unpacked(rq, NULL);
    return -ENOMEM;
  }
  /* Copied by element: an empty repeated field is a NULL array. */
  for (size_t i = 0; i < rq->n_argv; i++)
    argv[i] = rq->argv[i];
  for (size_t i = 0; i < rq->n_env_unset; i++)
    unset[i] = rq->env_unset[i];

  cli_exec_request req = {
      .argv = argv,
      .use_shell = rq->use_shell,
      .stdin_data = rq->stdin.data,
      .stdin_len = rq->stdin.len,
      .env_set = env,
      .env_unset = unset,
      .cwd = rq->cwd,
      .kill_grace_ms =
          rq->kill_grace_ms != 0 ? rq->kill_grace_ms : default_grace,
      .max_memory = rq->max_memory_output,
      .poll = poll_task,
      .poll_ctx = ctx,
  };
  cli_exec_result r;
  cli_err e = {{0}};
  int rc = cli_exec_run(&req, &r, &e);
  if (rc != 0) {
    ratchet_task_set_status(ctx, RATCHET_TASK_INTERNAL_ERROR);
    ratchet_task_set_error(ctx, "%s", e.msg);
    rc = 0;
    goto out;
  }
  ratchet_task_set_exit(ctx, r.exit_code, r.signal, r.core_dumped);
  char tail[ERR_TAIL + 1];
  stderr_tail(&r.err, tail, sizeof tail);
  if (r.spawn_error != 0) {
    ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
    ratchet_task_set_error(ctx, "cannot run '%.200s': %s", argv[0],
                           strerror(-r.spawn_error));
  } else if (r.stopped == CLI_EXEC_TIMEOUT) {
    ratchet_task_set_status(ctx, RATCHET_TASK_TIMEOUT);
    ratchet_task_set_error(ctx, "timed out: the process group was killed");
  } else if (r.stopped == CLI_EXEC_CANCEL) {
    ratchet_task_set_status(ctx, RATCHET_TASK_CANCELLED);
    ratchet_task_set_error(ctx, "cancelled: the process group was killed");
  } else if (r.out.error != 0 || r.err.error != 0) {
    ratchet_task_set_status(ctx, RATCHET_TASK_INTERNAL_ERROR);
    ratchet_task_set_error(
        ctx, "cannot keep the command's output: %s",
        strerror(-(r.out.error != 0 ? r.out.error : r.err.error)));
  } else if (r.signal != 0) {
    ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
    ratchet_task_set_error(ctx, "killed by signal %d (%s)%s%s%s", r.signal,
                           strsignal(r.signal), tail[0] ? ": " : "", tail,
                           r.core_dumped ? " (core dumped)" : "");
  } else if (r.exit_code != 0) {
    ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
    ratchet_task_set_error(ctx, "exit status %d%s%s", r.exit_code,
                           tail[0] ? ": " : "", tail);
  } else {
    ratchet_task_set_status(ctx, RATCHET_TASK_OK);
  }
  if (r.spawn_error == 0) {
    int drc = deliver(ctx, &r);
    if (drc != 0) {
      ratchet_task_set_status(ctx, RATCHET_TASK_INTERNAL_ERROR);
      ratchet_task_set_error(ctx, "cannot return the command's output: %s",
                             ratchet_strerror(drc));
    }
  }
  cli_exec_result_discard(&r);
out:
  ratchet_free(argv);
  free_vector(env);
  ratchet_free(unset);
  ratchet__v1__exec_request__free_unpacked(rq, NULL);
  return rc;
}

enum { W_HELP = 1, W_PLUGIN, W_NAME, W_KILL_GRACE };

static const cli_opt_def worker_defs[] = {
    {"help", 'h', CLI_ARG_NONE, W_HELP, NULL, "show this help"},
    {"plugin", 0, CLI_ARG_REQUIRED, W_PLUGIN, "FILE.so",
     "load the task kinds of a plugin (repeatable)"},
    {"name", 0, CLI_ARG_REQUIRED, W_NAME, "NAME",
     "the worker name announced in Ready [ratchet]"},
};

static void worker_help(FILE *f) {
  fprintf(f, "usage: ratchet worker [--plugin FILE.so]...\n\n"
             "Serves ratchet's protocol (docs/protocol.md) on stdin and "
             "stdout, for an\norchestrator such as `ratchet run`. Task "
             "kinds: exec (payload: an ExecRequest),\necho (returns the "
             "payload), and those of each plugin.\n\n");
  cli_opt_print_help(worker_defs, sizeof worker_defs / sizeof *worker_defs, f);
  fprintf(f, "\nExit status: 0 after Shutdown or the end of stdin, 1 "
             "after a protocol error,\n111 when the orchestrator is gone or "
             "a plugin cannot be loaded, 255 for usage.\n");
}

int cli_cmd_worker(int argc, char **argv) {
  cli_opt_scan s;
  cli_err e = {{0}};
  const char *v;
  int id;
  const char *name = "ratchet";
  const char **plugins = ratchet_calloc((size_t)argc + 1, sizeof *plugins);
  size_t nplugins = 0;
  if (plugins == NULL)
    return RATCHET_WORKER_EXIT_SYSTEM;
  cli_opt_init(&s, argc, argv, 2, worker_defs,
               sizeof worker_defs / sizeof *worker_defs);
  while ((id = cli_opt_next(&s, &v, &e)) > 0) {
    if (id == W_HELP) {
      worker_help(stdout);
      ratchet_free(plugins);
      return CLI_EXIT_OK;
    }
    if (id == W_PLUGIN)
      plugins[nplugins++] = v;
    if (id == W_NAME)
      name = v;
  }
  if (id == 0 && s.index < argc) {
    char show[CLI_SHOW_SIZE];
    cli_err_set(&e, "unexpected argument '%s'", cli_show(argv[s.index], show));
    id = -EINVAL;
  }
  if (id < 0) {
    fprintf(stderr, "ratchet worker: %s\n", e.msg);
    ratchet_free(plugins);
    return CLI_EXIT_USAGE;
  }

  /* Marks what our commands start as this worker's (janitor.h). */
  int mrc = cli_janitor_mark_worker();
  if (mrc != 0)
    fprintf(stderr,
            "ratchet worker: cannot mark its commands (%s): what they leave "
            "behind if this worker is killed is only ended with the run\n",
            strerror(-mrc));

  static uint32_t grace = CLI_EXEC_DEFAULT_GRACE_MS;
  ratchet_worker_options o = RATCHET_WORKER_OPTIONS_INIT;
  o.name = name;
  o.version = RATCHET_CLI_VERSION;
  ratchet_worker *w = NULL;
  cli_plugin **loaded = ratchet_calloc(nplugins + 1, sizeof *loaded);
  int status = RATCHET_WORKER_EXIT_SYSTEM;
  int rc;
  if (loaded == NULL || (rc = ratchet_worker_new(&o, &w)) != 0 ||
      (rc = ratchet_worker_register(w, "exec", exec_handler, &grace)) != 0 ||
      (rc = ratchet_worker_register(w, "echo", echo_handler, NULL)) != 0) {
    fprintf(stderr, "ratchet worker: cannot start: out of memory\n");
    goto out;
  }
  for (size_t i = 0; i < nplugins; i++) {
    if ((rc = cli_plugin_load(plugins[i], w, &loaded[i], &e)) != 0) {
      fprintf(stderr, "ratchet worker: %s\n", e.msg);
      goto out;
    }
  }
  if (isatty(0))
    fprintf(stderr, "ratchet worker: speaks ratchet's binary protocol on "
                    "stdin and stdout; `ratchet run` starts it\n");
  status = ratchet_worker_main(w);
out:
  /* Handlers may point into plugins: free the worker first. */
  ratchet_worker_free(w);
  if (loaded != NULL)
    for (size_t i = nplugins; i > 0; i--)
      cli_plugin_unload(loaded[i - 1]);
  ratchet_free(loaded);
  ratchet_free(plugins);
  return status;
}
