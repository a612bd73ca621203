/*
 * testutil.c - starting and reaping the child processes of the ipc tests
 * (the dispatcher of "--child NAME" is tu_main, tests/common).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

/* ---- child processes (transport tests) ------------------------------- */

extern char **environ;

pid_t tu_spawn(char *const argv[], int in_fd, int out_fd) {
  posix_spawn_file_actions_t fa;
  pid_t pid;
  if (posix_spawn_file_actions_init(&fa) != 0)
    return -1;
  if (in_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
  if (out_fd >= 0)
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return pid;
}

pid_t tu_spawn_child(const char *name, const char *arg, int in_fd, int out_fd) {
  char *argv[] = {(char *)tu_self_path(), (char *)"--child", (char *)name,
                  (char *)arg, NULL};
  return tu_spawn(argv, in_fd, out_fd);
}

int tu_wait(pid_t pid) {
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return -1;
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}
