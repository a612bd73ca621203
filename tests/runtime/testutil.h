/*
 * testutil.h - shared by the runtime test groups. tu_self_path() and the
 * group runner are in tests/common.
 */
#ifndef RATCHET_RUNTIME_TESTUTIL_H
#define RATCHET_RUNTIME_TESTUTIL_H

#include "testsupport.h"

/* One group per module, each returning its number of failures. */
int test_worker(void);
int test_pool(void);
int test_stress(void);
int test_containers(void);
int test_acct(void);
int test_events(void);
int test_orch(void);
int test_orch_chaos(void);
int test_metrics(void);

/* Children of the worker group (test_worker.c): "worker" serves the test
 * handlers on stdin/stdout; "worker-parent" starts a "worker" and waits to
 * be killed. */
int tu_worker_child(int argc, char **argv);
int tu_worker_parent_child(int argc, char **argv);

/* test_pool.c's worker process: "--child pool-worker MODE [CRASH_ON]". */
int tu_child_pool_worker(int argc, char **argv);

/* test_stress.c's worker: "--child stress-worker", serves kind "echo". */
int tu_child_stress_worker(int argc, char **argv);

/* The orchestrator groups' worker (orch_testutil.c): "--child orch-worker"
 * serves the handlers orch_testutil.h lists. */
int tu_child_orch_worker(int argc, char **argv);

/* Open descriptors of this process (entries of /proc/self/fd), or -1. */
int tu_count_fds(void);

/* What tu_proc_scan reads of one /proc/PID/stat. */
typedef struct tu_proc_stat {
  char state; /* 'Z': a zombie */
  int ppid;
  int pgrp;
} tu_proc_stat;
/* Calls fn for every process in /proc until it returns nonzero. */
void tu_proc_scan(int (*fn)(const tu_proc_stat *st, void *arg), void *arg);

/* A cmocka group setup: libuv opens process-wide descriptors on first use of
 * signals; open them before any test counts descriptors. */
int tu_uv_signal_setup(void **state);

#endif
