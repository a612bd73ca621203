/*
 * ratchet/status.h - the final status of an orchestrated task, shared by the
 * orchestrator (ratchet/orch.h), its events (ratchet/events.h) and its
 * accounting (ratchet/accounting.h).
 *
 * The first values are those of ratchet.v1.Status on the wire (what a worker
 * answered); the rest are decided by the orchestrator itself, for tasks that
 * never got a worker's answer.
 */
#ifndef RATCHET_STATUS_H
#define RATCHET_STATUS_H

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ratchet_status {
  RATCHET_STATUS_NONE = 0, /* not final yet; never delivered */
  /* A worker's answer (ratchet.v1.Status). */
  RATCHET_STATUS_OK = 1,
  RATCHET_STATUS_FAILED = 2,
  RATCHET_STATUS_TIMEOUT = 3, /* the attempt ran past its timeout */
  RATCHET_STATUS_CANCELLED = 4,
  RATCHET_STATUS_UNKNOWN_KIND = 5,
  RATCHET_STATUS_BAD_REQUEST = 6,
  RATCHET_STATUS_INTERNAL_ERROR = 7,
  /* The orchestrator's own. */
  RATCHET_STATUS_EXPIRED = 8,  /* not started before its expiry/deadline */
  RATCHET_STATUS_REJECTED = 9, /* met an open circuit breaker (fail fast) */
  RATCHET_STATUS_POISON = 10,  /* its worker died under it too many times */
  RATCHET_STATUS_LOST = 11,    /* could not be delivered to any worker */
  RATCHET_STATUS_SHUTDOWN = 12 /* the orchestrator closed before it ended */
} ratchet_status;

/* The number of values, for tables indexed by status. */
#define RATCHET_STATUS_COUNT 13

/* "ok", "failed", "timeout", "cancelled", "unknown_kind", "bad_request",
 * "internal_error", "expired", "rejected", "poison", "lost", "shutdown";
 * "none" for 0 and "unknown" out of range. Static strings, stable: they
 * appear in JSON lines, job logs and metrics labels. */
RATCHET_API const char *ratchet_status_name(ratchet_status s);

/* The status named s (as ratchet_status_name spells it): 0 and *out, or
 * -EINVAL. */
RATCHET_API int ratchet_status_parse(const char *s, ratchet_status *out);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_STATUS_H */
