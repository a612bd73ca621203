/*
 * yield_posix.c - gives up the CPU while a spin lock's holder runs, through
 * POSIX sched_yield(). Platforms without it use yield_none.c.
 */
#include <sched.h>

#include "spin.h"

void ratchet__spin_yield(void) {
  sched_yield();
}
