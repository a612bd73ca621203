/*
 * ipc_testutil.c - frame and SIGPIPE helpers shared by the transport tests.
 */
#include <signal.h>

#include "ipc_testutil.h"

uint8_t tu_pattern(size_t i, uint64_t seed) {
  return (uint8_t)((i * 131u + seed * 7u) & 0xff);
}

void tu_fill(uint8_t *p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++)
    p[i] = tu_pattern(i, seed);
}

int tu_check(const uint8_t *p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != tu_pattern(i, seed))
      return 0;
  return 1;
}

const Ratchet__V1__Frame *tu_make_ping(tu_msg *m, uint64_t seq) {
  ratchet__v1__frame__init(&m->f);
  ratchet__v1__ping__init(&m->u.ping);
  m->u.ping.seq = seq;
  m->f.msg_case = RATCHET__V1__FRAME__MSG_PING;
  m->f.ping = &m->u.ping;
  return &m->f;
}

const Ratchet__V1__Frame *tu_make_task(tu_msg *m, uint64_t id, uint8_t *data,
                                       size_t len) {
  ratchet__v1__frame__init(&m->f);
  ratchet__v1__task__init(&m->u.task);
  m->u.task.id = id;
  m->u.task.attempt = 1;
  m->u.task.kind = (char *)"echo";
  m->u.task.payload.data = data;
  m->u.task.payload.len = len;
  m->f.msg_case = RATCHET__V1__FRAME__MSG_TASK;
  m->f.task = &m->u.task;
  return &m->f;
}

const Ratchet__V1__Frame *tu_make_shutdown(tu_msg *m) {
  ratchet__v1__frame__init(&m->f);
  ratchet__v1__shutdown__init(&m->u.shutdown);
  m->f.msg_case = RATCHET__V1__FRAME__MSG_SHUTDOWN;
  m->f.shutdown = &m->u.shutdown;
  return &m->f;
}

int tu_sigpipe_setup(void **state) {
  static void (*old)(int);
  old = signal(SIGPIPE, SIG_IGN);
  *state = &old;
  return 0;
}

int tu_sigpipe_teardown(void **state) {
  void (**old)(int) = *state;
  signal(SIGPIPE, *old);
  return 0;
}
