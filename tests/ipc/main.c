/*
 * main.c - runs every ipc test group, or only those named on the command
 * line (`test-ipc frame`). A test that needs a child process runs this
 * binary again with "--child NAME" first: groups that need one add a line to
 * children[] and implement it in their file.
 */
#include "testutil.h"

static const tu_group groups[] = {
    {"frame", test_frame},
    {"codec", test_codec},
    {"fd_transport", test_fd_transport},
    {"uv_transport", test_uv_transport},
    {"interop", test_interop},
};

static const tu_child children[] = {
    {"fd_slow_writer", tu_child_fd_slow_writer},
    {"fd_flood", tu_child_fd_flood},
    {"fd_signal_write", tu_child_fd_signal_write},
    {"fd_read_check", tu_child_fd_read_check},
};

int main(int argc, char **argv) {
  return tu_main("test-ipc", groups, TU_ARRAY_LEN(groups), children,
                 TU_ARRAY_LEN(children), argc, argv);
}
