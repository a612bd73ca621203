/*
 * testutil.h - shared by the runtime test groups.
 */
#ifndef RATCHET_RUNTIME_TESTUTIL_H
#define RATCHET_RUNTIME_TESTUTIL_H

/* One group per module, each returning its number of failures. */
int test_worker(void);
int test_pool(void);
int test_stress(void);

/* Entry point of a child process: the test binary re-run as
 * "--child NAME ARGS...". Returns the child's exit status. */
int tu_child_main(const char *name, int argc, char **argv);

/* Children of the worker group (test_worker.c): "worker" serves the test
 * handlers on stdin/stdout; "worker-parent" starts a "worker" and waits to
 * be killed. */
int tu_worker_child(int argc, char **argv);
int tu_worker_parent_child(int argc, char **argv);

/* test_pool.c's worker process: "--child pool-worker MODE [CRASH_ON]". */
int tu_child_pool_worker(int argc, char **argv);

/* test_stress.c's worker: "--child stress-worker", serves kind "echo". */
int tu_child_stress_worker(int argc, char **argv);

/* The path of the running test binary, for spawning children. */
const char *tu_self_path(void);

#endif
