/*
 * exec.h - runs one command for the `exec` kind of `ratchet worker`: in its
 * own process group, stdin fed from memory, stdout and stderr captured at
 * the same time, bounded in memory and spilled to temporary files, with
 * cancellation and a time limit that end the whole process group.
 *
 * The caller must ignore SIGPIPE (ratchet_worker_main does): a command
 * that closes its stdin early makes the feeding write fail with EPIPE,
 * which is not an error.
 */
#ifndef RATCHET_CLI_EXEC_H
#define RATCHET_CLI_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include "diag.h"
#include "sbuf.h"

/* Why a command was stopped from outside. */
typedef enum cli_exec_stop {
  CLI_EXEC_RUN = 0,    /* not stopped: it ended by itself */
  CLI_EXEC_CANCEL = 1, /* the poll function asked */
  CLI_EXEC_TIMEOUT = 2 /* the time limit passed, or the poll function said
                          the deadline passed */
} cli_exec_stop;

/* Called about every 50 ms while the command runs. */
typedef cli_exec_stop (*cli_exec_poll_fn)(void *ctx);

#define CLI_EXEC_DEFAULT_MEMORY   (UINT64_C(16) << 20)
#define CLI_EXEC_DEFAULT_GRACE_MS 2000u
#define CLI_EXEC_POLL_MS          50

typedef struct cli_exec_request {
  char *const *argv;      /* NULL-terminated, at least one element */
  bool use_shell;         /* argv[0] is a script for shell -c */
  char *shell;            /* NULL: /bin/sh */
  const void *stdin_data; /* may be NULL with stdin_len 0 */
  size_t stdin_len;
  char *const *env_set;   /* "NAME=VALUE", NULL-terminated; may be NULL */
  char *const *env_unset; /* names, NULL-terminated; may be NULL */
  const char *cwd;        /* NULL or "": the caller's */
  uint32_t kill_grace_ms; /* 0: CLI_EXEC_DEFAULT_GRACE_MS */
  uint64_t max_memory;    /* per stream; 0: CLI_EXEC_DEFAULT_MEMORY */
  const char *tmp_dir;    /* for spill files; NULL: $TMPDIR or /tmp */
  uint64_t timeout_ms;    /* 0: none */
  cli_exec_poll_fn poll;  /* may be NULL */
  void *poll_ctx;
} cli_exec_request;

/* One captured stream: in memory, or (past max_memory) in a file. */
typedef struct cli_exec_stream {
  cli_sbuf mem;   /* the bytes, when not spilled */
  char *path;     /* the spill file (owned string; the file is kept), or
                     NULL */
  uint64_t total; /* bytes the command wrote */
  int error;      /* a negated errno if writing the spill file failed
                     (later bytes were dropped) */
} cli_exec_stream;

typedef struct cli_exec_result {
  int exit_code; /* as a shell reports it: 128 + signal if killed;
                    127 (not found) or 126 (not executable) if it
                    could not start */
  int signal;    /* 0: none */
  bool core_dumped;
  int spawn_error; /* negated errno when it could not start, else 0 */
  int pid;         /* the command's pid and process group (gone) */
  cli_exec_stop stopped;
  bool leftovers;      /* processes of its group outlived it (killed) */
  struct rusage usage; /* of the command (wait4) */
  uint64_t wall_us;
  uint64_t stdin_written;
  cli_exec_stream out, err;
} cli_exec_result;

/*
 * Runs req to the end and fills *res (free with cli_exec_result_free).
 * Returns 0 when the command ran or could not start (then spawn_error);
 * -EINVAL (no argv); a negated errno when the worker itself failed
 * (pipes, spawn resources), with a message in e; *res then needs no free.
 * When it returns, no process of the command's group is left.
 */
int cli_exec_run(const cli_exec_request *req, cli_exec_result *res, cli_err *e);

/* Frees memory; spill files stay (they belong to whoever got the paths).
 */
void cli_exec_result_free(cli_exec_result *res);

/* Deletes the spill files, then frees as cli_exec_result_free. */
void cli_exec_result_discard(cli_exec_result *res);

#endif
