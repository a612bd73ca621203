/*
 * ratchet/metrics.h - an orchestrator's numbers in the Prometheus text
 * exposition format (version 0.0.4): rendered to a string, written to a file
 * for node_exporter's textfile collector, or served over HTTP at /metrics.
 *
 * A ratchet_metrics object watches one orchestrator. Most numbers come from
 * the orchestrator's accounting (ratchet_orch_stats: task counters per kind,
 * outcomes and latency histograms per kind and status, the queue gauges),
 * snapshotted at each render. The rest - worker starts, exits, restarts,
 * recycles and hangs per pool, breaker state and transitions per group - the
 * accounting does not keep: an inline event subscriber counts them from the
 * orchestrator's event bus (ratchet/events.h).
 *
 * Every family is named ratchet_*, has HELP and TYPE lines, uses base units
 * (seconds) and, for counters, the _total suffix. Histograms are cumulative
 * _bucket{le="..."} series whose bounds are the accounting's power-of-two
 * microsecond bounds written in seconds (0.000001 .. 2147.483648, then
 * +Inf), with _sum in seconds and _count. Label values (kind, status, pool,
 * group, state, from, to) are escaped as the format requires (\\, \", \n);
 * bytes that are not valid UTF-8 become U+FFFD. docs/observability.md lists
 * every metric.
 *
 * Lifetime. The object borrows the orchestrator: it must be detached
 * (ratchet_metrics_detach) or freed before ratchet_orch_close completes,
 * because the orchestrator frees its event bus and its accounting then.
 * Detaching takes one last snapshot: a detached object goes on rendering
 * the run's final numbers, which is how a program writes its metrics file
 * after the orchestrator is gone.
 *
 * Threads: ratchet_metrics_new, ratchet_metrics_detach and
 * ratchet_metrics_free belong to the orchestrator's loop thread (they
 * subscribe to or leave its event bus). ratchet_metrics_render,
 * ratchet_metrics_write_file, ratchet_metrics_listen, ratchet_metrics_port
 * and ratchet_metrics_stop may be called from any thread; listen and stop
 * must not race with each other or with free.
 */
#ifndef RATCHET_METRICS_H
#define RATCHET_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"
#include "ratchet/orch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_metrics ratchet_metrics;

/* The Content-Type of the exposition format that render produces. */
#define RATCHET_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Room for the numeric host ratchet_metrics_parse_listen writes, with its
 * NUL (INET6_ADDRSTRLEN). */
#define RATCHET_METRICS_HOST_MAX 46

/*
 * Creates a metrics object watching o and subscribes its inline event
 * subscriber. Create it before ratchet_orch_start to count the first worker
 * starts too. Loop thread. Returns 0 and *out (free with
 * ratchet_metrics_free); -EINVAL (NULL argument); -ENOMEM; or
 * ratchet_events_subscribe's error. On failure nothing is subscribed.
 */
RATCHET_API int ratchet_metrics_new(ratchet_orch *o, ratchet_metrics **out);

/*
 * Leaves the orchestrator: takes a last snapshot of its accounting, which
 * every later render shows, and unsubscribes. Call it from the loop thread
 * while the orchestrator is still alive - typically once the last task has
 * completed, before or during ratchet_orch_close but before its callback.
 * A second call does nothing. If the last snapshot cannot be taken (out of
 * memory) the object is detached all the same and later renders show the
 * event counters and no accounting; -ENOMEM is then returned, else 0.
 */
RATCHET_API int ratchet_metrics_detach(ratchet_metrics *m);

/*
 * Renders every metric into a new NUL-terminated string: 0, *out (free
 * with ratchet_free, ratchet/alloc.h) and *len (its length without the
 * NUL; len may be NULL); -EINVAL (NULL m or out); -ENOMEM (*out is then
 * NULL). Any thread: the accounting is snapshotted, the event tables are
 * read under their lock.
 */
RATCHET_API int ratchet_metrics_render(ratchet_metrics *m, char **out,
                                       size_t *len);

/*
 * Renders and replaces path atomically, as node_exporter's textfile
 * collector needs: writes a temporary file in path's directory (a hidden
 * name that does not end in .prom, mode 0644), fsyncs it, renames it over
 * path and fsyncs the directory. A reader sees the old file or the new one,
 * never a part. Any thread; writers of the same path may run concurrently
 * (each has its own temporary file; the last rename wins). Returns 0;
 * -EINVAL (NULL or empty path); -ENOMEM; or the failing system call's errno
 * negated (-ENOENT for a missing directory, -EACCES, -ENOSPC, ...), in
 * which case the temporary file is removed and path is left as it was.
 */
RATCHET_API int ratchet_metrics_write_file(ratchet_metrics *m,
                                           const char *path);

/*
 * Parses a listen address: "PORT", ":PORT" (both 127.0.0.1), "HOST:PORT"
 * with a numeric IPv4 HOST or "localhost", or "[IPv6]:PORT"; PORT is
 * 0 .. 65535 (0: any free port). Writes the numeric host into host
 * (host_size >= RATCHET_METRICS_HOST_MAX) and the port into *port. Returns
 * 0, or -EINVAL (bad syntax, a host name other than localhost, a port out
 * of range, host too small), leaving the outputs unspecified.
 */
RATCHET_API int ratchet_metrics_parse_listen(const char *addr_port, char *host,
                                             size_t host_size, uint16_t *port);

/*
 * Serves the metrics over HTTP/1.1 with libmicrohttpd, on a thread of its
 * own: GET or HEAD /metrics renders on each request and answers 200 with
 * RATCHET_METRICS_CONTENT_TYPE; another path answers 404, another method
 * 405. addr_port as for ratchet_metrics_parse_listen: the loopback unless
 * an address is given (0.0.0.0 or [::] listen on every interface). *port
 * (may be NULL) gets the bound port, which is how a caller learns the
 * port that 0 chose. Returns 0; -EINVAL (bad address, NULL m); -EALREADY
 * (already listening: stop first); socket(2), bind(2) or listen(2)'s errno
 * negated (-EADDRINUSE, -EACCES, -EADDRNOTAVAIL); -ENOMEM; -EIO when
 * libmicrohttpd cannot start its daemon. On failure nothing listens.
 */
RATCHET_API int ratchet_metrics_listen(ratchet_metrics *m,
                                       const char *addr_port, uint16_t *port);

/* The port the server listens on, or 0 when it does not. */
RATCHET_API uint16_t ratchet_metrics_port(const ratchet_metrics *m);

/* Stops the server: refuses new connections, waits for requests being
 * answered, closes the socket and joins the thread. No-op when not
 * listening. */
RATCHET_API void ratchet_metrics_stop(ratchet_metrics *m);

/*
 * Stops the server, leaves the orchestrator if still attached (so the
 * orchestrator must still be alive then: see ratchet_metrics_detach) and
 * frees m. Loop thread. NULL is a no-op.
 */
RATCHET_API void ratchet_metrics_free(ratchet_metrics *m);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_METRICS_H */
