/*
 * trace.h - `ratchet run --trace FILE`: the run as Chrome trace-event JSON,
 * for Perfetto (ui.perfetto.dev) and chrome://tracing.
 *
 * The file is the "JSON Object Format" of the Trace Event Format:
 *
 *   {"traceEvents":[...],"displayTimeUnit":"ms","otherData":{...}}
 *
 * - one process per pool ("pid" = the pool's index, named "pool N") and
 *   one thread per worker slot ("tid" = the slot, named "worker N"), from
 *   metadata events ("ph":"M", process_name / thread_name /
 *   thread_sort_index);
 * - one complete event ("ph":"X", "ts" and "dur" in microseconds since the
 *   run started) per attempt, named "KIND #SEQ INPUT" (cut at 63 bytes),
 *   category "attempt", args {task, task_id, attempt, status, exit,
 *   signal, error, final}; "cname" colours it by status in
 *   chrome://tracing;
 * - instant events ("ph":"i"): "retry" and "lost" on the worker's track
 *   (thread scope), "worker exited" / "worker restarting" / "worker hung" /
 *   "worker recycled" on theirs, "pool failed" (process scope) and
 *   "breaker GROUP: FROM -> TO" (global scope);
 * - otherData: the ratchet version, the wall-clock start, and how many
 *   attempts and instants the bounded record left out (record.h).
 *
 * Written once at the end of the run, from the record, to FILE.tmp and
 * renamed over FILE, so a reader never sees half a trace.
 */
#ifndef RATCHET_CLI_TRACE_H
#define RATCHET_CLI_TRACE_H

#include "diag.h"
#include "record.h"

/* Writes the trace of r to path. 0, or a negated errno with the message
 * in e (which names --trace and the path). */
int cli_trace_write(const cli_rec *r, const char *path, cli_err *e);

#endif
