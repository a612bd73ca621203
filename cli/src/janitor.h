/*
 * janitor.h - the process that makes sure `ratchet run` leaves nothing
 * behind, even when it is SIGKILLed (janitor.c has the design).
 *
 * Every process a run starts carries CLI_JANITOR_ENV in its environment;
 * when the run ends, for whatever reason, the janitor SIGKILLs every
 * process of the same user whose environment holds this run's id.
 */
#ifndef RATCHET_CLI_JANITOR_H
#define RATCHET_CLI_JANITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The marker variable. Its value is a ':'-separated list of run ids, the
 * outermost run's first: a run started by a task of another run appends
 * its own id, so the outer run's janitor still finds all of it. */
#define CLI_JANITOR_ENV "RATCHET_RUN_ID"

/* Longest id, "<pid>.<16 hex digits>", with its NUL. */
#define CLI_JANITOR_ID_MAX 40

typedef struct cli_janitor {
  pid_t pid;   /* the janitor, or -1 */
  int tell_fd; /* write end: "clean exit", and EOF when we exit */
  int ack_fd;  /* read end: the janitor's "swept" after a clean exit */
  char id[CLI_JANITOR_ID_MAX];
} cli_janitor;

#define CLI_JANITOR_INIT                                                       \
  {                                                                            \
    -1, -1, -1, {                                                              \
      0                                                                        \
    }                                                                          \
  }

/*
 * Makes up this run's id, adds it to CLI_JANITOR_ENV in our environment
 * (so that every process started from now on inherits it) and forks the
 * janitor. Call it before any thread exists and before the first child
 * is started. Returns 0, or a negated errno; on failure *j is left
 * CLI_JANITOR_INIT and the environment as it was, and the run goes on
 * without a janitor.
 */
int cli_janitor_start(cli_janitor *j);

/*
 * The run is over and we are about to exit: tells the janitor so, waits
 * (at most about five seconds) until it has killed whatever carries the
 * marker, e.g. daemons a task left behind with setsid, then closes our
 * ends. The janitor sweeps once more when we have exited, and ends. Does
 * nothing on a cli_janitor that did not start; safe to call twice.
 */
void cli_janitor_finish(cli_janitor *j);

/*
 * For `ratchet worker`, once at start: when it runs under a run (the marker
 * is set), appends a token "<run id>+<own pid>" to the marker in its
 * environment (the run id being the marker's last token without a '+'),
 * so that every command it starts, and all they start, can be told apart
 * from the other workers' when it dies. 0, or a negated errno (the
 * marker is then left as it was). Nothing to do without a marker: 0.
 */
int cli_janitor_mark_worker(void);

/*
 * For `ratchet run`, when worker pid of run id has died: SIGKILLs every
 * process of our user that carries its token - what its commands left
 * behind, which would otherwise run on beside the task's retry until the
 * run ends. Sweeps /proc until a pass finds nothing (5 passes at most,
 * 20 ms apart); returns how many the first pass killed. It reads other
 * processes' environments,
 * which can block: call it off the event loop.
 */
unsigned cli_janitor_sweep_worker(const char *id, pid_t worker);

/*
 * True if the environment block env (NUL-separated "NAME=value" entries,
 * as /proc/PID/environ holds it; len bytes) marks the process as part of
 * run id. Exposed for tests.
 */
bool cli_janitor_marked(const char *env, size_t len, const char *id);

#endif
