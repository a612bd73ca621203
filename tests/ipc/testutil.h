/*
 * testutil.h - shared by the ipc test groups.
 */
#ifndef RATCHET_IPC_TESTUTIL_H
#define RATCHET_IPC_TESTUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* One group per module, each returning its number of failures. */
int test_frame(void);
int test_codec(void);
int test_fd_transport(void);
int test_uv_transport(void);
int test_interop(void);

/* Entry point of a child process: the test binary re-run as
 * "--child NAME ARGS...". Returns the child's exit status. */
int tu_child_main(const char *name, int argc, char **argv);

/* The path of the running test binary, for spawning children. */
const char *tu_self_path(void);

/* The counting, failure-injecting allocator (as in tests/resilience), for
 * the -ENOMEM unwind tests and the "no allocation on hot paths" checks.
 * Installs it; allocations after `fail_after` more successful ones fail
 * (SIZE_MAX: never). */
void tu_alloc_install(size_t fail_after);
/* Restores the C library's allocator. */
void tu_alloc_uninstall(void);
/* Allocations (malloc, calloc, realloc) made since install. */
size_t tu_alloc_count(void);
/* Blocks currently allocated through the hook and not yet freed. */
long tu_alloc_live(void);
/* The size asked for by the latest allocation, and the largest since
 * install: to check that memory follows the bytes that really arrived. */
size_t tu_alloc_last_size(void);
size_t tu_alloc_max_size(void);

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
