/*
 * main.c - runs every caching test group, or only those named on the command
 * line (`test-caching policy`). A test that needs a child process runs this
 * binary again with "--child NAME" first: groups that need one add a line to
 * children[] and implement it in their file.
 */
#include "testutil.h"

static const tu_group groups[] = {
    {"policy", test_policy},
    {"memcache", test_memcache},
    {"cachesim", test_cachesim},
    {"key", test_key},
    {"store", test_store},
    {"tiered", test_tiered},
    {"singleflight", test_singleflight},
};

static const tu_child children[] = {
    {"store-crash", tu_store_crash_child},
    {"store-grow", tu_store_grow_child},
};

int main(int argc, char **argv) {
  return tu_main("test-caching", groups, TU_ARRAY_LEN(groups), children,
                 TU_ARRAY_LEN(children), argc, argv);
}
