/*
 * ratchet/plugin.h - the plugin ABI of `ratchet worker --plugin FILE.so`.
 *
 * A plugin is a shared object that adds task kinds to `ratchet worker`: C
 * handlers that run in the worker process itself, without starting a
 * command per task. It exports one symbol, a descriptor named
 * RATCHET_PLUGIN_SYMBOL ("ratchet_plugin"), most easily with
 * RATCHET_PLUGIN_DEFINE:
 *
 *   #include <ratchet/plugin.h>
 *
 *   static int upper(void *data, ratchet_task_ctx *ctx) { ... }
 *
 *   static int init(ratchet_worker *w, void **state) {
 *     (void)state;
 *     return ratchet_worker_register(w, "upper", upper, NULL);
 *   }
 *
 *   RATCHET_PLUGIN_DEFINE("upper", "1.0.0", init, NULL)
 *
 * and is built with `cc -shared -fPIC upper.c -o upper.so $(pkg-config
 * --cflags ratchet-runtime)`; it needs not link libratchet-runtime: the
 * worker provides its symbols. Handlers follow ratchet/worker.h (docs/
 * worker.md): they run one at a time on the worker's thread and must poll
 * ratchet_task_cancelled() if they run long.
 *
 * Loading: the worker dlopen()s each --plugin in order (RTLD_NOW |
 * RTLD_LOCAL), reads the descriptor, and refuses the plugin - exiting 111
 * with a message naming the file and both versions - unless abi_version
 * equals the RATCHET_PLUGIN_ABI_VERSION the worker was built with. Only
 * then does it read the other fields and call init, which registers the
 * plugin's kinds and may set *state; a non-zero return refuses the plugin
 * with ratchet_strerror() of the value. fini(state), if not NULL, runs
 * after the worker stops serving, before dlclose.
 *
 * Compatibility: abi_version is the first field forever. The ABI version
 * rises whenever this struct or the meaning of a ratchet/worker.h function
 * a plugin may call changes incompatibly; plugins must then be rebuilt.
 */
#ifndef RATCHET_PLUGIN_H
#define RATCHET_PLUGIN_H

#include "ratchet/worker.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The plugin ABI this header describes. */
#define RATCHET_PLUGIN_ABI_VERSION 1u

/* The name of the descriptor symbol the worker looks up. */
#define RATCHET_PLUGIN_SYMBOL "ratchet_plugin"

typedef struct ratchet_plugin_descriptor {
  /* RATCHET_PLUGIN_ABI_VERSION of the header the plugin was built with.
   * Always the first field. */
  unsigned abi_version;
  /* For messages: a short name and a version string (may be NULL). */
  const char *name;
  const char *version;
  /* Registers the plugin's kinds on w with ratchet_worker_register; may
   * set *state (given to fini). Returns 0, or a negative error code to
   * refuse loading. Called once, before serving. */
  int (*init)(ratchet_worker *w, void **state);
  /* Frees what init made; may be NULL. */
  void (*fini)(void *state);
} ratchet_plugin_descriptor;

#if defined(__GNUC__) || defined(__clang__)
#define RATCHET__PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define RATCHET__PLUGIN_EXPORT
#endif

/* Defines the exported descriptor of a plugin. */
#define RATCHET_PLUGIN_DEFINE(name_, version_, init_, fini_)                   \
  RATCHET__PLUGIN_EXPORT const ratchet_plugin_descriptor ratchet_plugin = {    \
      RATCHET_PLUGIN_ABI_VERSION, (name_), (version_), (init_), (fini_)};

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_PLUGIN_H */
