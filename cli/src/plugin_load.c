/*
 * plugin_load.c - dlopen of `--plugin` shared objects (plugin_load.h).
 * The descriptor's abi_version is read before any other field, so a plugin
 * built for another ABI is refused before its layout can be misread.
 */
#include "plugin_load.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/plugin.h"

struct cli_plugin {
  void *handle;
  const ratchet_plugin_descriptor *desc;
  void *state;
};

int cli_plugin_load(const char *path, ratchet_worker *w, cli_plugin **out,
                    cli_err *e) {
  char pshow[CLI_SHOW_PATH_SIZE];
  struct stat st;
  if (stat(path, &st) != 0) {
    int err = errno;
    cli_err_set(e, "--plugin: cannot load '%s': %s", cli_show_path(path, pshow),
                strerror(err));
    return -err;
  }
  /* dlopen searches the library path for names without a slash; a plugin
   * is a file, so make the name a path. */
  char buf[4096];
  const char *p = path;
  if (strchr(path, '/') == NULL && strlen(path) + 3 <= sizeof buf) {
    memcpy(buf, "./", 2);
    memcpy(buf + 2, path, strlen(path) + 1);
    p = buf;
  }
  void *h = dlopen(p, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char *why = dlerror();
    cli_err_set(e, "--plugin: cannot load '%s': %s", cli_show_path(path, pshow),
                why != NULL ? why : "unknown error");
    return -EINVAL;
  }
  const ratchet_plugin_descriptor *d = dlsym(h, RATCHET_PLUGIN_SYMBOL);
  if (d == NULL) {
    cli_err_set(e,
                "--plugin: '%s' is not a ratchet plugin: it has no '%s' "
                "symbol (see ratchet/plugin.h)",
                cli_show_path(path, pshow), RATCHET_PLUGIN_SYMBOL);
    dlclose(h);
    return -EINVAL;
  }
  if (d->abi_version != RATCHET_PLUGIN_ABI_VERSION) {
    cli_err_set(e,
                "--plugin: '%s' was built for plugin ABI %u, this ratchet "
                "speaks ABI %u: rebuild it against this ratchet's "
                "<ratchet/plugin.h>",
                cli_show_path(path, pshow), d->abi_version,
                RATCHET_PLUGIN_ABI_VERSION);
    dlclose(h);
    return -EINVAL;
  }
  if (d->init == NULL) {
    cli_err_set(e, "--plugin: '%s' has no init function",
                cli_show_path(path, pshow));
    dlclose(h);
    return -EINVAL;
  }
  cli_plugin *pl = ratchet_calloc(1, sizeof *pl);
  if (pl == NULL) {
    dlclose(h);
    return -ENOMEM;
  }
  int rc = d->init(w, &pl->state);
  if (rc != 0) {
    cli_err_set(e, "--plugin: '%s' (%s) refused to load: %s",
                cli_show_path(path, pshow), d->name != NULL ? d->name : "?",
                ratchet_strerror(rc));
    ratchet_free(pl);
    dlclose(h);
    return rc < 0 ? rc : -EINVAL;
  }
  pl->handle = h;
  pl->desc = d;
  *out = pl;
  return 0;
}

void cli_plugin_unload(cli_plugin *p) {
  if (p == NULL)
    return;
  if (p->desc->fini != NULL)
    p->desc->fini(p->state);
  dlclose(p->handle);
  ratchet_free(p);
}
