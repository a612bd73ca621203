/*
 * ipc_testutil.h - frame helpers shared by the transport tests
 * (test_fd_transport.c, test_uv_transport.c, test_interop.c): payloads
 * filled with a seeded pattern, frames built on the stack, and a group
 * setup that ignores SIGPIPE.
 */
#ifndef RATCHET_IPC_IPC_TESTUTIL_H
#define RATCHET_IPC_IPC_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/codec.h"

/* Byte i of the pattern seeded by `seed`. */
uint8_t tu_pattern(size_t i, uint64_t seed);
/* Fills p[0..n-1] with the pattern. */
void tu_fill(uint8_t *p, size_t n, uint64_t seed);
/* 1 if p[0..n-1] holds the pattern, else 0. */
int tu_check(const uint8_t *p, size_t n, uint64_t seed);

/* A frame and its message, filled by the tu_make_* helpers (and by each
 * file's own make_hello). */
typedef struct tu_msg {
  Ratchet__V1__Frame f;
  union {
    Ratchet__V1__Task task;
    Ratchet__V1__Ping ping;
    Ratchet__V1__Hello hello;
    Ratchet__V1__Ready ready;
    Ratchet__V1__Shutdown shutdown;
  } u;
} tu_msg;

/* A Ping frame with sequence number seq. */
const Ratchet__V1__Frame *tu_make_ping(tu_msg *m, uint64_t seq);
/* A Task frame of kind "echo", attempt 1, with payload data[0..len-1]. */
const Ratchet__V1__Frame *tu_make_task(tu_msg *m, uint64_t id, uint8_t *data,
                                       size_t len);
/* A Shutdown frame. */
const Ratchet__V1__Frame *tu_make_shutdown(tu_msg *m);

/* cmocka group setup and teardown for groups that write to pipes (as any
 * program using libuv must): ignore SIGPIPE, then restore its handler. */
int tu_sigpipe_setup(void **state);
int tu_sigpipe_teardown(void **state);

#endif
