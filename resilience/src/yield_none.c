/*
 * yield_none.c - for platforms without sched_yield() (bare-metal targets):
 * the spin lock simply keeps spinning.
 */
#include "spin.h"

void ratchet__spin_yield(void) {
}
