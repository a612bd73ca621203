/*
 * replay.c - runs files through the fuzz target without libFuzzer, so that
 * every build (any compiler, with or without sanitizers, under valgrind)
 * checks the seed corpus and any crash reproducer saved next to it.
 *
 * Usage: fuzz-frame-replay PATH...  where each PATH is a file or a
 * directory whose regular files are all run. Exits 0 when every input ran,
 * 1 if a path could not be read (a failing input aborts instead), and 2 if
 * no input was found, so that a wrong path does not pass silently.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_frame.h"

static int run_file(const char *path, size_t *count) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) {
      fclose(f);
      fprintf(stderr, "%s: out of memory\n", path);
      return -1;
    }
    len += fread(buf + len, 1, cap - len, f);
    if (len < cap)
      break;
    cap *= 2;
    uint8_t *p = realloc(buf, cap);
    if (p == NULL)
      free(buf);
    buf = p;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    fprintf(stderr, "%s: read error\n", path);
    free(buf);
    return -1;
  }
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  ++*count;
  return 0;
}

static int run_path(const char *path, size_t *count) {
  struct stat st;
  if (stat(path, &st) != 0) {
    perror(path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode))
    return run_file(path, count);
  DIR *dir = opendir(path);
  if (dir == NULL) {
    perror(path);
    return -1;
  }
  int rc = 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    size_t n = strlen(path) + strlen(e->d_name) + 2;
    char *full = malloc(n);
    if (full == NULL) {
      rc = -1;
      break;
    }
    snprintf(full, n, "%s/%s", path, e->d_name);
    if (stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
        run_file(full, count) < 0)
      rc = -1;
    free(full);
  }
  closedir(dir);
  return rc;
}

int main(int argc, char **argv) {
  size_t count = 0;
  int rc = 0;
  for (int i = 1; i < argc; i++)
    if (run_path(argv[i], &count) < 0)
      rc = 1;
  printf("fuzz-frame-replay: %zu inputs\n", count);
  if (rc == 0 && count == 0) {
    fprintf(stderr, "fuzz-frame-replay: no inputs found\n");
    return 2;
  }
  return rc;
}
