/*
 * bench_worker.c - the worker process of bench-runtime's spawn mode: serves
 * task kind "noop" (an empty Result, STATUS_OK) with ratchet/worker.h on
 * stdin/stdout until Shutdown or the end of stdin. Exit status: that of
 * ratchet_worker_main (0, 1 protocol error, 111 system failure).
 */
#include <stddef.h>

#include <ratchet/worker.h>

static int noop(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  (void)ctx;
  return 0;
}

int main(void) {
  ratchet_worker_options o = RATCHET_WORKER_OPTIONS_INIT;
  o.name = "bench-worker";
  ratchet_worker *w;
  if (ratchet_worker_new(&o, &w) != 0)
    return RATCHET_WORKER_EXIT_SYSTEM;
  int rc = ratchet_worker_register(w, "noop", noop, NULL);
  rc = rc == 0 ? ratchet_worker_main(w) : RATCHET_WORKER_EXIT_SYSTEM;
  ratchet_worker_free(w);
  return rc;
}
