/*
 * ratchet/worker.h - the worker side of ratchet: handler functions served
 * over a worker process's stdin and stdout.
 *
 * A worker program registers one handler function per task kind, then calls
 * ratchet_worker_main(), which speaks the wire protocol of docs/protocol.md
 * on fds 0 and 1 until the orchestrator says Shutdown, closes the worker's
 * stdin, or breaks the protocol. The library answers Hello, Ping and
 * Cancel itself; a handler sees one task at a time (kind, id, payload,
 * attempt, deadline, metadata), fills in its result (status, output, error
 * text, exit code) and may send Log lines and poll for cancellation.
 * docs/worker.md is the guide.
 *
 * Threads: a worker and the task contexts it hands out belong to the thread
 * that calls ratchet_worker_serve(); none of these functions may be called
 * from another thread while it runs. Handlers run on that thread, one after
 * the other, in the order their Tasks arrived.
 */
#ifndef RATCHET_WORKER_H
#define RATCHET_WORKER_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Lets the compiler check the format strings of the printf-like functions. */
#if defined(__GNUC__) || defined(__clang__)
#define RATCHET__WORKER_PRINTF(fmt, args)                                      \
  __attribute__((format(printf, fmt, args)))
#else
#define RATCHET__WORKER_PRINTF(fmt, args)
#endif

/* The handler registry and the serving state of one worker process. */
typedef struct ratchet_worker ratchet_worker;

/* One task while its handler runs: borrowed by the handler for the call,
 * never valid after the handler returns. */
typedef struct ratchet_task_ctx ratchet_task_ctx;

/*
 * A task's outcome, with the values of ratchet.v1.Status on the wire.
 * RATCHET_TASK_UNSET (0) is never sent: it means "not set by the handler".
 */
typedef enum ratchet_task_status {
  RATCHET_TASK_UNSET = 0,
  RATCHET_TASK_OK = 1,
  RATCHET_TASK_FAILED = 2,
  RATCHET_TASK_TIMEOUT = 3,
  RATCHET_TASK_CANCELLED = 4,
  RATCHET_TASK_UNKNOWN_KIND = 5,
  RATCHET_TASK_BAD_REQUEST = 6,
  RATCHET_TASK_INTERNAL_ERROR = 7
} ratchet_task_status;

/* Levels of Log lines, with the values of ratchet.v1.LogLevel. */
typedef enum ratchet_log_level {
  RATCHET_LOG_DEBUG = 1,
  RATCHET_LOG_INFO = 2,
  RATCHET_LOG_WARN = 3,
  RATCHET_LOG_ERROR = 4
} ratchet_log_level;

/* Exit statuses returned by ratchet_worker_serve and ratchet_worker_main,
 * as docs/protocol.md documents them. */
enum {
  RATCHET_WORKER_EXIT_OK = 0,       /* Shutdown, or stdin ended cleanly */
  RATCHET_WORKER_EXIT_PROTOCOL = 1, /* a protocol error, either side's */
  RATCHET_WORKER_EXIT_SYSTEM = 111  /* a write failed, or the parent died */
};

/*
 * A handler runs one task. data is the pointer given to
 * ratchet_worker_register; ctx is borrowed for the call. It fills the result
 * with the ratchet_task_set_* functions and returns 0 or a negative error
 * code. When it set no status, the Result's status is:
 *   - STATUS_CANCELLED (STATUS_TIMEOUT if the deadline was the reason) if
 *     ratchet_task_cancelled() returned true during the call - the handler
 *     saw the stop request, whatever it returns then;
 *   - otherwise STATUS_OK for 0, and STATUS_FAILED for any other value, with
 *     ratchet_strerror(rc) as the error text unless one was set.
 * A handler must not call ratchet_worker_serve or free the worker.
 */
typedef int (*ratchet_handler_fn)(void *data, ratchet_task_ctx *ctx);

/*
 * name: the worker_name sent in Ready, for the orchestrator's logs
 *   ["ratchet-c"]; copied.
 * version: the worker_version sent in Ready ["" - none]; copied.
 * max_frame_size: the largest frame body the worker reads, announced in
 *   Ready; a bigger frame is a protocol error (ERROR_FRAME, exit 1)
 *   [0: RATCHET_FRAME_MAX_DEFAULT, 64 MiB; at most SIZE_MAX / 2].
 * max_in_flight: announced in Ready: the most Tasks the worker accepts at
 *   once [0: as many as the orchestrator's pipeline_depth]. Tasks beyond it
 *   are still queued and run in order (the protocol allows refusing them;
 *   this worker is lenient).
 * set_pdeathsig: ratchet_worker_main asks the kernel to SIGKILL the worker
 *   when its parent dies (PR_SET_PDEATHSIG, Linux only; elsewhere only the
 *   end of stdin stops an orphan) [true].
 * parent_pid: the orchestrator's pid, when known (a forked worker knows it:
 *   the value of getpid() before fork). ratchet_worker_main then exits at
 *   once if its parent is no longer that process after setting up
 *   PR_SET_PDEATHSIG - the parent died before the kernel could be asked
 *   [0: compare with the parent seen just before the request].
 */
typedef struct ratchet_worker_options {
  const char *name;
  const char *version;
  size_t max_frame_size;
  uint32_t max_in_flight;
  bool set_pdeathsig;
  int parent_pid;
} ratchet_worker_options;

#define RATCHET_WORKER_OPTIONS_INIT                                            \
  {                                                                            \
    .name = "ratchet-c", .version = "", .max_frame_size = 0,                   \
    .max_in_flight = 0, .set_pdeathsig = true, .parent_pid = 0                 \
  }

/* ---- the worker ------------------------------------------------------ */

/*
 * Creates a worker with no handlers. o may be NULL for the defaults
 * (RATCHET_WORKER_OPTIONS_INIT); it and its strings are copied (NULL
 * strings mean the defaults). Returns 0 and sets *out (free with
 * ratchet_worker_free); -EINVAL (out NULL, max_frame_size too big);
 * -ENOMEM. On failure nothing is allocated.
 */
RATCHET_API int ratchet_worker_new(const ratchet_worker_options *o,
                                   ratchet_worker **out);

/*
 * Registers fn for tasks of the given kind (a non-empty string, copied);
 * data is handed to fn as it is and stays the caller's. Kinds are listed in
 * Ready in the order they were registered. Returns 0; -EINVAL (a NULL
 * argument, an empty kind); -EEXIST if kind already has a handler; -EBUSY
 * while the worker is serving; -ENOMEM. On failure the worker is unchanged.
 */
RATCHET_API int ratchet_worker_register(ratchet_worker *w, const char *kind,
                                        ratchet_handler_fn fn, void *data);

/*
 * Serves the protocol: reads frames from in_fd and writes frames to out_fd
 * (neither is closed; both may be blocking or not) until the session ends,
 * and returns the exit status for the process:
 *   0    after Shutdown (queued Tasks are answered STATUS_CANCELLED, the
 *        running one may finish within the grace period), or when in_fd
 *        ends between frames (no Result is sent after that: nobody reads);
 *   1    after a protocol error: an Error frame was sent (best effort) -
 *        a version mismatch, a bad or oversized frame, a message out of
 *        turn - or the orchestrator sent an Error;
 *   111  when writing to out_fd failed (the orchestrator is gone), or the
 *        worker could not allocate its buffers.
 * Ping is answered as soon as it is read, even while a handler runs (when
 * it polls ratchet_task_cancelled); Cancel of a queued Task answers it
 * STATUS_CANCELLED without running it. Sets no signal disposition: with
 * SIGPIPE at its default, the transport still turns a broken pipe into
 * status 111. The worker may be served again afterwards (counters go on).
 * Returns -EINVAL for a NULL worker or a negative fd, -EBUSY if called from
 * a handler.
 */
RATCHET_API int ratchet_worker_serve(ratchet_worker *w, int in_fd, int out_fd);

/*
 * What a worker process's main() calls: ignores SIGPIPE, asks for
 * PR_SET_PDEATHSIG(SIGKILL) when the options say so (then returns 111 if
 * the parent is already gone, see parent_pid), and serves fds 0 and 1.
 * Returns the exit status, as ratchet_worker_serve; pass it to exit() or
 * _exit() (a forked child of a libuv program should use _exit()).
 */
RATCHET_API int ratchet_worker_main(ratchet_worker *w);

/* Frees the worker and its registry. NULL is a no-op. Not from a handler. */
RATCHET_API void ratchet_worker_free(ratchet_worker *w);

/*
 * Sends a Log line that concerns no task (task_id 0), formatted as printf
 * does. Only while serving, after the handshake (from a handler, typically).
 * Returns 0; -EINVAL (fmt NULL); -ENOTCONN if not serving or before the
 * handshake; -ENOMEM; the write error (the session then ends with 111).
 */
RATCHET_API int ratchet_worker_log(ratchet_worker *w, ratchet_log_level level,
                                   const char *fmt, ...)
    RATCHET__WORKER_PRINTF(3, 4);

/* ---- the task, as the handler sees it --------------------------------- */

/* The task's kind, id and attempt (1 for the first). The string is borrowed
 * until the handler returns. */
RATCHET_API const char *ratchet_task_kind(const ratchet_task_ctx *ctx);
RATCHET_API uint64_t ratchet_task_id(const ratchet_task_ctx *ctx);
RATCHET_API uint32_t ratchet_task_attempt(const ratchet_task_ctx *ctx);

/* The payload bytes, borrowed until the handler returns; *len (not NULL)
 * is set to their count. May return NULL when the payload is empty. */
RATCHET_API const uint8_t *ratchet_task_payload(const ratchet_task_ctx *ctx,
                                                size_t *len);

/* The absolute deadline in Unix epoch milliseconds, 0 for none. */
RATCHET_API uint64_t ratchet_task_deadline_ms(const ratchet_task_ctx *ctx);

/* Milliseconds left until the deadline, by the realtime clock: 0 once it has
 * passed, UINT64_MAX when the task has none. */
RATCHET_API uint64_t ratchet_task_time_left_ms(const ratchet_task_ctx *ctx);

/* The metadata value for key, or NULL; borrowed until the handler returns.
 * If a key appears twice (a peer bug), the last one wins, as in protobuf. */
RATCHET_API const char *ratchet_task_meta(const ratchet_task_ctx *ctx,
                                          const char *key);

/* The number of metadata entries, and entry i of them (0-based, in wire
 * order): returns 0 and sets *key and *value (borrowed until the handler
 * returns), or -ERANGE if i is past the end. */
RATCHET_API size_t ratchet_task_meta_count(const ratchet_task_ctx *ctx);
RATCHET_API int ratchet_task_meta_at(const ratchet_task_ctx *ctx, size_t i,
                                     const char **key, const char **value);

/*
 * True once the task should stop: a Cancel for it arrived, its deadline
 * passed, the grace period of a Shutdown ran out, stdin ended, or the
 * session failed. Each call that finds no reason yet also reads whatever
 * frames are waiting on stdin without blocking (so Cancel, Ping and queued
 * Tasks are handled while the handler runs): call it every few
 * milliseconds in a long handler. Once true it stays true for this task.
 */
RATCHET_API bool ratchet_task_cancelled(ratchet_task_ctx *ctx);

/* Sets the Result's status explicitly (see ratchet_handler_fn for what
 * happens without it). Returns 0, or -EINVAL for RATCHET_TASK_UNSET or a
 * value outside the enum. */
RATCHET_API int ratchet_task_set_status(ratchet_task_ctx *ctx,
                                        ratchet_task_status status);

/* Replaces the output with a copy of len bytes (data may be NULL when len is
 * 0). Returns 0, or -ENOMEM (output unchanged). Output over the
 * orchestrator's frame limit is not sent: the Result becomes
 * STATUS_INTERNAL_ERROR with an error saying so. */
RATCHET_API int ratchet_task_set_output(ratchet_task_ctx *ctx, const void *data,
                                        size_t len);

/* Appends a copy of len bytes to the output. 0 or -ENOMEM (unchanged). */
RATCHET_API int ratchet_task_append_output(ratchet_task_ctx *ctx,
                                           const void *data, size_t len);

/* The most children one task may produce. */
#define RATCHET_TASK_MAX_CHILDREN 4096u

/*
 * Asks the orchestrator to submit a child task (kind, and len bytes of
 * payload, both copied) once this task has succeeded; it gets the parent's
 * policies when the parent carries the "produces" policy (ratchet/orch.h),
 * and is ignored otherwise. Children of a task that does not end OK are
 * dropped. Returns 0; -EINVAL (empty kind, NULL payload with a length);
 * -E2BIG (over RATCHET_TASK_MAX_CHILDREN); -ENOMEM.
 */
RATCHET_API int ratchet_task_produce(ratchet_task_ctx *ctx, const char *kind,
                                     const void *payload, size_t len);

/* Sets the error text, formatted as printf does (valid UTF-8, please: other
 * languages' protobuf runtimes refuse anything else). Returns 0, -EINVAL
 * (fmt NULL) or -ENOMEM (text unchanged). */
RATCHET_API int ratchet_task_set_error(ratchet_task_ctx *ctx, const char *fmt,
                                       ...) RATCHET__WORKER_PRINTF(2, 3);

/* Replaces the Result's stderr (a command's standard error) with a copy of
 * len bytes. 0, -EINVAL (data NULL with len > 0) or -ENOMEM (unchanged).
 * Counts toward the frame limit together with the output. */
RATCHET_API int ratchet_task_set_stderr(ratchet_task_ctx *ctx, const void *data,
                                        size_t len);

/* Sets Result.stdout_path / stderr_path (copied; NULL for none): temporary
 * files holding a stream too big for memory. Ownership of the files passes
 * to the orchestrator when the Result is sent (docs/protocol.md, "Spilled
 * output"). 0 or -ENOMEM (unchanged). */
RATCHET_API int ratchet_task_set_output_files(ratchet_task_ctx *ctx,
                                              const char *stdout_path,
                                              const char *stderr_path);

/* Sends this usage in the Result instead of the worker's own CPU and RSS
 * during the handler (for a handler whose work ran in a child process). */
RATCHET_API void ratchet_task_set_usage(ratchet_task_ctx *ctx,
                                        uint64_t user_cpu_us,
                                        uint64_t sys_cpu_us,
                                        uint64_t max_rss_kb, uint64_t wall_us);

/* For a task that ran a command: its exit code, or the signal that killed
 * it (0 for none) and whether it dumped core. */
RATCHET_API void ratchet_task_set_exit(ratchet_task_ctx *ctx, int exit_code,
                                       int signal, bool core_dumped);

/* Sends a Log line tagged with this task's id now, formatted as printf
 * does. Returns 0; -EINVAL; -ENOMEM; or the write error (the session then
 * ends with 111 after the handler returns, and cancelled() is true). */
RATCHET_API int ratchet_task_log(ratchet_task_ctx *ctx, ratchet_log_level level,
                                 const char *fmt, ...)
    RATCHET__WORKER_PRINTF(3, 4);

/* The worker serving this task (for ratchet_worker_log, say). */
RATCHET_API ratchet_worker *ratchet_task_worker(const ratchet_task_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_WORKER_H */
