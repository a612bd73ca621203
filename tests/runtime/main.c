/*
 * main.c - runs every runtime test group, or only those named on the command
 * line (`test-runtime worker`). A test that needs a child process runs this
 * binary again with "--child NAME" first: groups that need one add a line to
 * children[] and implement it in their file.
 */
#include "testutil.h"

static const tu_group groups[] = {
    {"worker", test_worker},   {"pool", test_pool},
    {"stress", test_stress},   {"containers", test_containers},
    {"acct", test_acct},       {"events", test_events},
    {"orch", test_orch},       {"orch-chaos", test_orch_chaos},
    {"metrics", test_metrics},
};

static const tu_child children[] = {
    {"worker", tu_worker_child},
    {"worker-parent", tu_worker_parent_child},
    {"pool-worker", tu_child_pool_worker},
    {"stress-worker", tu_child_stress_worker},
    {"orch-worker", tu_child_orch_worker},
};

int main(int argc, char **argv) {
  return tu_main("test-runtime", groups, TU_ARRAY_LEN(groups), children,
                 TU_ARRAY_LEN(children), argc, argv);
}
