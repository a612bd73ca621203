/*
 * testutil.h - shared by the ipc test groups.
 */
#ifndef RATCHET_IPC_TESTUTIL_H
#define RATCHET_IPC_TESTUTIL_H

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

#endif
