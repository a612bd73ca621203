/*
 * testutil.c - the child-process dispatcher of the ipc tests. Groups that
 * need a child add a line to children[] and implement it in their file.
 * Below it, the counting, failure-injecting allocator of the -ENOMEM tests.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ratchet/alloc.h"

#include "testutil.h"

static const struct {
  const char *name;
  int (*main)(int argc, char **argv);
} children[] = {
    {"fd_slow_writer", tu_child_fd_slow_writer},
    {"fd_flood", tu_child_fd_flood},
    {"fd_signal_write", tu_child_fd_signal_write},
    {"fd_read_check", tu_child_fd_read_check},
    {NULL, NULL},
};

int tu_child_main(const char *name, int argc, char **argv) {
  for (size_t i = 0; i < sizeof children / sizeof children[0]; i++)
    if (children[i].name != NULL && strcmp(children[i].name, name) == 0)
      return children[i].main(argc, argv);
  fprintf(stderr, "no such child: %s\n", name);
  return 2;
}

const char *tu_self_path(void) {
  static char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  if (n < 0)
    return NULL;
  path[n] = '\0';
  return path;
}

/* The counting, failure-injecting allocator. Counters are atomic so that
 * tests running threads can use it too. */
static atomic_size_t tu_allocs;
static atomic_long tu_live;
static atomic_size_t tu_last_size, tu_max_size;
static size_t tu_budget;

static int tu_take(size_t size) {
  size_t n = atomic_fetch_add(&tu_allocs, 1);
  atomic_store(&tu_last_size, size);
  size_t m = atomic_load(&tu_max_size);
  while (size > m && !atomic_compare_exchange_weak(&tu_max_size, &m, size))
    ;
  return tu_budget == SIZE_MAX || n < tu_budget;
}

static void *tu_malloc(size_t size) {
  void *p = tu_take(size) ? malloc(size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void *tu_calloc(size_t count, size_t size) {
  void *p = tu_take(count * size) ? calloc(count, size) : NULL;
  if (p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void *tu_realloc(void *ptr, size_t size) {
  if (!tu_take(size))
    return NULL;
  void *p = realloc(ptr, size);
  if (ptr == NULL && p != NULL)
    atomic_fetch_add(&tu_live, 1);
  return p;
}

static void tu_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&tu_live, 1);
  free(ptr);
}

void tu_alloc_install(size_t fail_after) {
  atomic_store(&tu_allocs, 0);
  atomic_store(&tu_live, 0);
  atomic_store(&tu_last_size, 0);
  atomic_store(&tu_max_size, 0);
  tu_budget = fail_after;
  ratchet_replace_allocator(tu_malloc, tu_realloc, tu_calloc, tu_free);
}

void tu_alloc_uninstall(void) {
  ratchet_reset_allocator();
}

size_t tu_alloc_count(void) {
  return atomic_load(&tu_allocs);
}

long tu_alloc_live(void) {
  return atomic_load(&tu_live);
}

size_t tu_alloc_last_size(void) {
  return atomic_load(&tu_last_size);
}

size_t tu_alloc_max_size(void) {
  return atomic_load(&tu_max_size);
}

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
