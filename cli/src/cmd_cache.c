/*
 * cmd_cache.c - `ratchet cache stats|gc|clear|verify|explain`: looks after
 * the persistent result cache (ratchet/store.h) that `ratchet run --cache`
 * fills. The directory is --dir DIR, else the library's default
 * (ratchet_store_default_dir). A directory holding no store is reported as
 * such and never created by these commands.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmds.h"
#include "diag.h"
#include "opt.h"
#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/key.h"
#include "ratchet/store.h"

enum { C_HELP = 1, C_DIR };

static const cli_opt_def cache_defs[] = {
    {"help", 'h', CLI_ARG_NONE, C_HELP, NULL, "show this help"},
    {"dir", 0, CLI_ARG_REQUIRED, C_DIR, "DIR",
     "the cache directory [the default of ratchet run --cache]"},
};

static void cache_help(FILE *f) {
  fprintf(f, "usage: ratchet cache [--dir DIR] stats|gc|clear|verify\n"
             "       ratchet cache [--dir DIR] explain NAME|KEY\n"
             "\n"
             "  stats    entries, sizes and limits of the cache\n"
             "  gc       remove expired, idle and least recently used entries\n"
             "  clear    remove every entry\n"
             "  verify   check every entry's checksum, remove the bad ones\n"
             "  explain  the components of a task's key: NAME is a task name,\n"
             "           KEY 32 hex digits\n\n");
  cli_opt_print_help(cache_defs, sizeof cache_defs / sizeof *cache_defs, f);
  fprintf(f, "\nExit status: 0 done; 1 the cache is unreadable, verify "
             "found bad entries, or\nexplain found nothing; 255 usage.\n");
}

static int fail_store(const char *what, int rc) {
  const char *msg = ratchet_store_last_error();
  fprintf(stderr, "ratchet cache %s: %s\n", what,
          msg != NULL && msg[0] != '\0' ? msg : ratchet_strerror(rc));
  return CLI_EXIT_FAILURE;
}

static int print_component(void *ctx, const ratchet_key_component *c) {
  (void)ctx;
  char hex[RATCHET_CACHE_KEY_HEX_SIZE];
  char name[256], show[CLI_SHOW_SIZE];
  size_t n = c->name_len < sizeof name - 1 ? c->name_len : sizeof name - 1;
  if (n > 0)
    memcpy(name, c->name, n);
  name[n] = '\0';
  printf("  %-8s %-24s %10llu bytes  %s\n", ratchet_key_part_name(c->part),
         n > 0 ? cli_show(name, show) : "-", (unsigned long long)c->value_len,
         ratchet_cache_key_hex(&c->digest, hex));
  return 0;
}

static int explain(ratchet_store *s, const char *arg) {
  char hex[RATCHET_CACHE_KEY_HEX_SIZE], show[CLI_SHOW_SIZE];
  ratchet_cache_key key;
  void *m = NULL;
  size_t mlen = 0;
  uint64_t now = ratchet_store_now_ms();
  int rc;
  if (strlen(arg) == 32 && ratchet_cache_key_parse(arg, &key) == 0) {
    rc = ratchet_store_get_manifest(s, &key, now, &m, &mlen);
    if (rc == RATCHET_ECACHE_MISS) {
      printf("key %s: not in the cache (never stored, expired or "
             "evicted)\n",
             ratchet_cache_key_hex(&key, hex));
      return CLI_EXIT_FAILURE;
    }
    if (rc != 0)
      return fail_store("explain", rc);
    printf("key %s: cached\n", ratchet_cache_key_hex(&key, hex));
  } else {
    rc = ratchet_store_last_manifest(s, arg, &key, &m, &mlen);
    if (rc == RATCHET_ECACHE_MISS) {
      printf("task '%s': no key was ever stored under this name\n",
             cli_show(arg, show));
      return CLI_EXIT_FAILURE;
    }
    if (rc != 0)
      return fail_store("explain", rc);
    void *probe = NULL;
    size_t plen;
    int hit = ratchet_store_get_manifest(s, &key, now, &probe, &plen);
    ratchet_free(probe);
    printf("task '%s': last key %s, %s\n", cli_show(arg, show),
           ratchet_cache_key_hex(&key, hex),
           hit == 0 ? "cached" : "no longer cached (expired or evicted)");
  }
  printf("components:\n");
  rc = ratchet_key_manifest_foreach(m, mlen, print_component, NULL);
  ratchet_free(m);
  if (rc != 0) {
    fprintf(stderr, "ratchet cache explain: the stored manifest is "
                    "malformed; run `ratchet cache verify`\n");
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

static int has_store(const char *dir) {
  char path[4200];
  struct stat st;
  int n = snprintf(path, sizeof path, "%s/data.mdb", dir);
  return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0;
}

int cli_cmd_cache(int argc, char **argv) {
  char pshow[CLI_SHOW_PATH_SIZE];
  char show[CLI_SHOW_SIZE];
  cli_opt_scan s;
  cli_err e = {{0}};
  const char *v, *dir = NULL;
  int id;
  cli_opt_init(&s, argc, argv, 2, cache_defs,
               sizeof cache_defs / sizeof *cache_defs);
  while ((id = cli_opt_next(&s, &v, &e)) > 0) {
    if (id == C_HELP) {
      cache_help(stdout);
      return CLI_EXIT_OK;
    }
    if (id == C_DIR)
      dir = v;
  }
  if (id < 0) {
    fprintf(stderr, "ratchet cache: %s\n", e.msg);
    return CLI_EXIT_USAGE;
  }
  if (s.index >= argc) {
    fprintf(stderr, "ratchet cache: missing command (expected stats, gc, "
                    "clear, verify or explain)\n");
    return CLI_EXIT_USAGE;
  }
  const char *cmd = argv[s.index];
  int nargs = argc - s.index - 1;
  bool is_explain = strcmp(cmd, "explain") == 0;
  if (!is_explain && strcmp(cmd, "stats") != 0 && strcmp(cmd, "gc") != 0 &&
      strcmp(cmd, "clear") != 0 && strcmp(cmd, "verify") != 0) {
    fprintf(stderr,
            "ratchet cache: unknown command '%s' (expected stats, gc, "
            "clear, verify or explain)\n",
            cli_show(cmd, show));
    return CLI_EXIT_USAGE;
  }
  if (nargs > 0 && strcmp(argv[s.index + 1], "--help") == 0) {
    cache_help(stdout);
    return CLI_EXIT_OK;
  }
  if (is_explain ? nargs != 1 : nargs != 0) {
    fprintf(stderr,
            is_explain ? "ratchet cache explain: expected one NAME or KEY\n"
                       : "ratchet cache %s: unexpected argument '%s'\n",
            cmd, nargs > 0 ? cli_show(argv[s.index + 1], show) : "");
    return CLI_EXIT_USAGE;
  }
  if (dir != NULL && dir[0] == '\0') {
    fprintf(stderr, "ratchet cache: --dir: the path is empty\n");
    return CLI_EXIT_USAGE;
  }
  char defdir[4096];
  if (dir == NULL) {
    if (ratchet_store_default_dir(defdir, sizeof defdir) != 0) {
      fprintf(stderr, "ratchet cache: no default cache directory (set "
                      "XDG_CACHE_HOME or HOME, or give --dir DIR)\n");
      return CLI_EXIT_USAGE;
    }
    dir = defdir;
  }
  if (!has_store(dir)) {
    printf("no cache in %s\n", cli_show_path(dir, pshow));
    return is_explain ? CLI_EXIT_FAILURE : CLI_EXIT_OK;
  }
  ratchet_store_options so = RATCHET_STORE_OPTIONS_INIT;
  so.dir = dir;
  ratchet_store *st;
  int rc = ratchet_store_open(&so, &st);
  if ((rc == RATCHET_ECACHE_CORRUPT || rc == RATCHET_ECACHE_VERSION) &&
      strcmp(cmd, "clear") == 0) {
    /* The store's own messages send the user here: a store that cannot
     * be opened is removed whole, to be rebuilt by the next run. */
    int drc = ratchet_store_destroy(dir);
    if (drc != 0)
      return fail_store(cmd, drc);
    printf("removed the unreadable cache store in %s\n",
           cli_show_path(dir, pshow));
    return CLI_EXIT_OK;
  }
  if (rc != 0)
    return fail_store(cmd, rc);
  int status = CLI_EXIT_OK;
  if (strcmp(cmd, "stats") == 0) {
    ratchet_store_stats x;
    ratchet_store_stats_get(st, &x);
    printf("directory  %s\n"
           "entries    %llu\n"
           "bytes      %llu (limit %llu)\n"
           "names      %llu\n"
           "file       %llu bytes (map %llu)\n",
           cli_show_path(ratchet_store_dir(st), pshow),
           (unsigned long long)x.entries, (unsigned long long)x.bytes,
           (unsigned long long)x.max_bytes, (unsigned long long)x.names,
           (unsigned long long)x.file_bytes, (unsigned long long)x.map_size);
  } else if (strcmp(cmd, "gc") == 0) {
    ratchet_store_gc_result g;
    rc = ratchet_store_gc(st, ratchet_store_now_ms(), &g);
    if (rc != 0)
      status = fail_store(cmd, rc);
    else
      printf("removed %llu expired, %llu idle, %llu evicted entries "
             "(%llu bytes)\n",
             (unsigned long long)g.expired, (unsigned long long)g.idle,
             (unsigned long long)g.evicted, (unsigned long long)g.bytes_freed);
  } else if (strcmp(cmd, "clear") == 0) {
    ratchet_store_stats x;
    ratchet_store_stats_get(st, &x);
    rc = ratchet_store_clear(st);
    if (rc != 0)
      status = fail_store(cmd, rc);
    else
      printf("removed %llu entries\n", (unsigned long long)x.entries);
  } else if (strcmp(cmd, "verify") == 0) {
    uint64_t bad = 0;
    rc = ratchet_store_verify(st, &bad);
    if (rc != 0) {
      status = fail_store(cmd, rc);
    } else if (bad > 0) {
      printf("removed %llu corrupt entries\n", (unsigned long long)bad);
      status = CLI_EXIT_FAILURE;
    } else {
      printf("all entries are intact\n");
    }
  } else {
    status = explain(st, argv[s.index + 1]);
  }
  ratchet_store_close(st);
  return status;
}
