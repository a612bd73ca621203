/*
 * testutil.c - helpers shared by the pool and stress groups: counting open
 * descriptors, scanning /proc for processes, and opening libuv's
 * process-wide signal descriptors before any test counts descriptors.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#include "testutil.h"

int tu_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (d == NULL)
    return -1;
  while (readdir(d) != NULL)
    n++;
  closedir(d);
  return n;
}

void tu_proc_scan(int (*fn)(const tu_proc_stat *st, void *arg), void *arg) {
  DIR *d = opendir("/proc");
  if (d == NULL)
    return;
  struct dirent *e;
  int stop = 0;
  while (!stop && (e = readdir(d)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0]))
      continue;
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    /* pid (comm) state ppid pgrp ...; comm may hold spaces and ')'. */
    char *rp = strrchr(buf, ')');
    tu_proc_stat st;
    if (rp == NULL ||
        sscanf(rp + 1, " %c %d %d", &st.state, &st.ppid, &st.pgrp) != 3)
      continue;
    stop = fn(&st, arg);
  }
  closedir(d);
}

int tu_uv_signal_setup(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_signal_t sig;
  uv_loop_init(&loop);
  uv_signal_init(&loop, &sig);
  uv_close((uv_handle_t *)&sig, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return 0;
}
