/*
 * plugin_load.h - loads `--plugin FILE.so` into a worker (the ABI is
 * ratchet/plugin.h).
 */
#ifndef RATCHET_CLI_PLUGIN_LOAD_H
#define RATCHET_CLI_PLUGIN_LOAD_H

#include "diag.h"
#include "ratchet/worker.h"

typedef struct cli_plugin cli_plugin;

/*
 * dlopens path, checks the descriptor's ABI version and calls its init on
 * w. Returns 0 and *out (unload with cli_plugin_unload after serving);
 * -ENOENT (no such file), -EINVAL (not a loadable shared object, no
 * descriptor, a wrong ABI version) or init's error, with a message naming
 * the file. On failure the library is closed again.
 */
int cli_plugin_load(const char *path, ratchet_worker *w, cli_plugin **out,
                    cli_err *e);

/* Calls fini and dlcloses. NULL is a no-op. */
void cli_plugin_unload(cli_plugin *p);

#endif
