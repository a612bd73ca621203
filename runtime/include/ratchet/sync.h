/*
 * ratchet/sync.h - a blocking layer over the orchestrator, for programs that
 * do not run a libuv loop: submit, then wait for the outcome.
 *
 * A ratchet_sync owns a private loop, an orchestrator on it and its pools.
 * The loop runs only inside ratchet_sync_wait / ratchet_sync_run /
 * ratchet_sync_free, on the calling thread, so the program needs no thread
 * of its own and its callbacks-free code stays sequential: workers are
 * supervised, tasks retried, results cached, all while it waits. Tasks
 * submitted together run in parallel; wait for each in any order.
 *
 * Threads: a ratchet_sync belongs to the thread that created it (the pools'
 * PR_SET_PDEATHSIG follows that thread).
 */
#ifndef RATCHET_SYNC_H
#define RATCHET_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"
#include "ratchet/orch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_sync ratchet_sync;

/*
 * orch    the orchestrator's options (data and on_room are the layer's)
 * pools   n_pools pool options, each with the NULL-terminated kinds it
 *         serves (NULL: every kind), as ratchet_orch_add_pool takes them
 */
typedef struct ratchet_sync_pool {
  ratchet_pool_options pool;
  const char *const *kinds;
} ratchet_sync_pool;

typedef struct ratchet_sync_options {
  ratchet_orch_options orch;
  const ratchet_sync_pool *pools;
  size_t n_pools;
} ratchet_sync_options;

/* An outcome the caller owns: the result with its own copies of output,
 * error and stderr (r's pointers point into this object), and its own name
 * for each spilled output file (r.stdout_path, r.stderr_path), deleted by
 * ratchet_sync_result_free unless renamed away first. */
typedef struct ratchet_sync_result {
  ratchet_orch_result r;
} ratchet_sync_result;

/* Creates the loop, the orchestrator and the pools, and starts them.
 * 0 and *out; -EINVAL (see the message written to err, when not NULL, of
 * err_len bytes); -ENOMEM; a pool's error. */
RATCHET_API int ratchet_sync_new(const ratchet_sync_options *o,
                                 ratchet_sync **out, char *err, size_t err_len);

/* Submits a task (copied; spec.on_done and data are ignored). 0 and *id,
 * or ratchet_orch_submit's error; the queue being full is not an error
 * here: submit runs the loop until there is room. */
RATCHET_API int ratchet_sync_submit(ratchet_sync *s,
                                    const ratchet_task_spec *spec,
                                    uint64_t *id);

/* Runs the loop until task id has ended; then *out (free it). 0; -ENOENT
 * (not submitted through s, or already waited for); -ENOMEM. */
RATCHET_API int ratchet_sync_wait(ratchet_sync *s, uint64_t id,
                                  ratchet_sync_result **out);

/* Submit, then wait. */
RATCHET_API int ratchet_sync_run(ratchet_sync *s, const ratchet_task_spec *spec,
                                 ratchet_sync_result **out);

/* The orchestrator (borrowed), e.g. for its events and stats. */
RATCHET_API ratchet_orch *ratchet_sync_orch(ratchet_sync *s);

/* Frees a result. NULL is a no-op. */
RATCHET_API void ratchet_sync_result_free(ratchet_sync_result *r);

/* Closes the orchestrator (tasks not waited for end SHUTDOWN or finish),
 * runs the loop until everything is closed, frees everything. NULL is a
 * no-op. */
RATCHET_API void ratchet_sync_free(ratchet_sync *s);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_SYNC_H */
