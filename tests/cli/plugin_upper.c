/*
 * plugin_upper.c - an example `ratchet worker --plugin`: kind "upper"
 * returns its payload in capitals; kind "upper-slow" polls for
 * cancellation until cancelled. Built twice by tests/cli: as is, and with
 * TEST_PLUGIN_ABI=99 to check that a plugin of another ABI is refused.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "ratchet/plugin.h"

static int upper(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *in = ratchet_task_payload(ctx, &len);
  char *out = malloc(len + 1);
  if (out == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < len; i++)
    out[i] = (char)toupper(in[i]);
  int rc = ratchet_task_set_output(ctx, out, len);
  free(out);
  return rc;
}

static int upper_slow(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  const struct timespec tick = {0, 10000000};
  while (!ratchet_task_cancelled(ctx))
    nanosleep(&tick, NULL);
  return 0;
}

static int init(ratchet_worker *w, void **state) {
  (void)state;
  int rc = ratchet_worker_register(w, "upper", upper, NULL);
  if (rc == 0)
    rc = ratchet_worker_register(w, "upper-slow", upper_slow, NULL);
  return rc;
}

#ifdef TEST_PLUGIN_ABI
/* A plugin built against a future header. */
RATCHET__PLUGIN_EXPORT const ratchet_plugin_descriptor ratchet_plugin = {
    TEST_PLUGIN_ABI, "upper", "9.9.9", init, NULL};
#else
RATCHET_PLUGIN_DEFINE("upper", "1.0.0", init, NULL)
#endif
