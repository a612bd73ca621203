/*
 * testutil.h - shared by the ipc test groups. tu_self_path() and the
 * counting, failure-injecting allocator (tu_alloc_*) are in tests/common;
 * the frame helpers of the transport tests are in ipc_testutil.h.
 */
#ifndef RATCHET_IPC_TESTUTIL_H
#define RATCHET_IPC_TESTUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include "testsupport.h"

/* One group per module, each returning its number of failures. */
int test_frame(void);
int test_codec(void);
int test_fd_transport(void);
int test_uv_transport(void);
int test_interop(void);

/* Children of the transport tests: the test binary re-run as
 * "--child NAME ARGS..." with its stdin and stdout on the pipes or sockets
 * under test (test_fd_transport.c). */
int tu_child_fd_slow_writer(int argc, char **argv);
int tu_child_fd_flood(int argc, char **argv);
int tu_child_fd_signal_write(int argc, char **argv);
int tu_child_fd_read_check(int argc, char **argv);

/* Starts argv[0] (a path; argv NULL-terminated) with its stdin on in_fd and
 * its stdout on out_fd (-1: inherited). The descriptors the test keeps must
 * be close-on-exec. Returns the pid, or -1 with errno set. */
pid_t tu_spawn(char *const argv[], int in_fd, int out_fd);
/* tu_spawn of this test binary as "--child NAME ARG" (arg may be NULL). */
pid_t tu_spawn_child(const char *name, const char *arg, int in_fd, int out_fd);
/* Waits for pid: its exit status, 128 + the signal that killed it, or -1. */
int tu_wait(pid_t pid);

#endif
