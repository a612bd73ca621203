/*
 * main.c - runs every group of test-cli, or those named on the command line
 * (`test-cli joblog`).
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratchet/key.h"
#include "ratchet/store.h"
#include "testutil.h"

static const tu_group groups[] = {
    {"parse", test_parse},   {"template", test_template},
    {"input", test_input},   {"config", test_config},
    {"joblog", test_joblog}, {"run_options", test_run_options},
    {"exec", test_exec},
};

const char *tu_write_temp(int slot, const char *text, size_t len) {
  static char paths[4][64];
  char *p = paths[slot & 3];
  snprintf(p, 64, "/tmp/test-cli-%d-%d-XXXXXX", (int)getpid(), slot);
  int fd = mkstemp(p);
  if (fd < 0)
    abort();
  if (len > 0 && write(fd, text, len) != (ssize_t)len)
    abort();
  close(fd);
  return p;
}

/* "--child make-store DIR": a store with three entries, put under the
 * task names task-1..3 with manifests, for the `ratchet cache` tests in
 * test_ratchet.py. Prints the key of task-1. */
static int make_store(int argc, char **argv) {
  if (argc < 1)
    return 2;
  ratchet_store_options o = RATCHET_STORE_OPTIONS_INIT;
  o.dir = argv[0];
  ratchet_store *s;
  if (ratchet_store_open(&o, &s) != 0)
    return 1;
  for (int i = 1; i <= 3; i++) {
    char name[32], value[32];
    snprintf(name, sizeof name, "task-%d", i);
    snprintf(value, sizeof value, "output of %d\n", i);
    ratchet_key_builder *b;
    ratchet_cache_key key;
    const void *m;
    size_t mlen;
    if (ratchet_key_builder_new(&b) != 0 ||
        ratchet_key_add_kind(b, "exec") != 0 ||
        ratchet_key_add_payload(b, name, strlen(name)) != 0 ||
        ratchet_key_add_env(b, "CC", "gcc") != 0 ||
        ratchet_key_finish(b, &key) != 0 ||
        ratchet_key_manifest(b, &m, &mlen) != 0)
      return 1;
    ratchet_store_put_options po = RATCHET_STORE_PUT_OPTIONS_INIT;
    po.manifest = m;
    po.manifest_len = mlen;
    po.name = name;
    if (ratchet_store_put(s, &key, value, strlen(value), &po,
                          ratchet_store_now_ms()) != 0)
      return 1;
    if (i == 1) {
      char hex[RATCHET_CACHE_KEY_HEX_SIZE];
      printf("%s\n", ratchet_cache_key_hex(&key, hex));
    }
    ratchet_key_builder_free(b);
  }
  ratchet_store_close(s);
  return 0;
}

static const tu_child children[] = {
    {"make-store", make_store},
};

int main(int argc, char **argv) {
  return tu_main("test-cli", groups, TU_ARRAY_LEN(groups), children,
                 TU_ARRAY_LEN(children), argc, argv);
}
