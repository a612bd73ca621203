/*
 * status.c - names of the final task statuses (ratchet/status.h). The names
 * are part of the output formats (JSON lines, job logs, metric labels), so
 * they never change once released.
 */
#include <errno.h>
#include <string.h>

#include "ratchet/status.h"

static const char *const names[RATCHET_STATUS_COUNT] = {
    "none",         "ok",          "failed",         "timeout", "cancelled",
    "unknown_kind", "bad_request", "internal_error", "expired", "rejected",
    "poison",       "lost",        "shutdown"};

const char *ratchet_status_name(ratchet_status s) {
  if ((unsigned)s >= RATCHET_STATUS_COUNT)
    return "unknown";
  return names[s];
}

int ratchet_status_parse(const char *s, ratchet_status *out) {
  if (s == NULL || out == NULL)
    return -EINVAL;
  for (unsigned i = 1; i < RATCHET_STATUS_COUNT; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (ratchet_status)i;
      return 0;
    }
  }
  return -EINVAL;
}
