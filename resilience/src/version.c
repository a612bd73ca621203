/*
 * version.c - the run-time version, for programs that want to compare it
 * with the RATCHET_VERSION_* they were compiled against.
 */
#include "ratchet/version.h"

const char *ratchet_version_string(void) {
  return RATCHET_VERSION_STRING;
}
