/*
 * cachesim.c - ratchet-cachesim: replays a libCacheSim "oracleGeneral" trace
 * through the memory tier's eviction policies and prints the miss ratio for
 * each cache size.
 *
 * A thin driver of the public ratchet_cache_sim interface (so it runs the
 * library's own policy code): one simulator per (policy, size), all fed from
 * one pass over the trace, which is read in blocks and never held whole.
 * Records are little-endian and 24 bytes: uint32 time, uint64 object id,
 * uint32 object size, int64 next access time; only the id and size matter.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ratchet/alloc.h>
#include <ratchet/cache.h>
#include <ratchet/cache_policy.h>
#include <ratchet/error.h>

#define EXIT_TRACE   1   /* the trace is malformed */
#define EXIT_USAGE   100 /* bad command line */
#define EXIT_SYSTEM  111 /* a system call or allocation failed */
#define RECORD_BYTES 24
#define BLOCK        4096 /* records per read */

static const char *prog = "ratchet-cachesim";

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: %s --policy NAME[,NAME...] --size BYTES[,BYTES...] TRACE\n"
      "\n"
      "Replays TRACE, a libCacheSim oracleGeneral binary trace (little-endian\n"
      "24-byte records: uint32 time, uint64 object id, uint32 object size,\n"
      "int64 next access time), through the eviction policies of\n"
      "libratchet-caching, and prints for each policy and size, in the order\n"
      "given, one line:\n"
      "\n"
      "  policy=NAME size=BYTES requests=N misses=N miss_ratio=F\n"
      "\n"
      "options:\n"
      "  --policy NAME[,NAME...]  s3fifo, sieve, lru or fifo\n"
      "  --size BYTES[,BYTES...]  cache capacities in bytes, >= 1; a suffix\n"
      "                           k, m, g or t multiplies by 1024^1..4\n"
      "  -h, --help               print this help and exit\n"
      "\n"
      "exit status:\n"
      "  0    success\n"
      "  1    the trace is malformed (it ends inside a record)\n"
      "  100  usage error (bad flag or value)\n"
      "  111  system failure (the trace cannot be read, out of memory)\n",
      prog);
}

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 1, 2)))
#endif
static int
usage_error(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '%s --help'.\n", prog);
  return EXIT_USAGE;
}

/* Parses one size: digits, then an optional binary suffix. */
static int parse_size(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  size_t i = 0;
  if (len == 0)
    return -1;
  for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
    if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
      return -1;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (i == 0)
    return -1;
  if (i < len) {
    static const char suffixes[] = "kKmMgGtT";
    const char *u = s[i] != '\0' ? strchr(suffixes, s[i]) : NULL;
    if (u == NULL || i + 1 != len)
      return -1;
    unsigned shift = 10 * (1 + (unsigned)(u - suffixes) / 2);
    if (v > (UINT64_MAX >> shift))
      return -1;
    v <<= shift;
  }
  if (v == 0)
    return -1;
  *out = v;
  return 0;
}

/* Splits a comma-separated list, calling item() on each part; returns the
 * first nonzero item() result. */
static int split(const char *list, int (*item)(const char *, size_t, void *),
                 void *ctx) {
  const char *p = list;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
    int r = item(p, len, ctx);
    if (r != 0 || comma == NULL)
      return r;
    p = comma + 1;
  }
}

struct list {
  uint64_t *v;
  size_t n;
  const char *bad; /* the item that did not parse */
  int bad_len;
};

static int push(struct list *l, uint64_t v) {
  uint64_t *nv = realloc(l->v, (l->n + 1) * sizeof *nv);
  if (nv == NULL)
    return -ENOMEM;
  l->v = nv;
  l->v[l->n++] = v;
  return 0;
}

static int bad_item(struct list *l, const char *s, size_t len) {
  l->bad = s;
  l->bad_len = len > 64 ? 64 : (int)len;
  return -EINVAL;
}

static int size_item(const char *s, size_t len, void *ctx) {
  uint64_t v;
  if (parse_size(s, len, &v) != 0)
    return bad_item(ctx, s, len);
  return push(ctx, v);
}

static int policy_item(const char *s, size_t len, void *ctx) {
  char name[16];
  ratchet_cache_policy p;
  if (len >= sizeof name)
    return bad_item(ctx, s, len);
  memcpy(name, s, len);
  name[len] = '\0';
  if (ratchet_cache_policy_parse(name, &p) != 0)
    return bad_item(ctx, s, len);
  return push(ctx, (uint64_t)p);
}

static uint64_t le64(const unsigned char *b) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | b[i];
  return v;
}

static uint32_t le32(const unsigned char *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
         (uint32_t)b[3] << 24;
}

/* Replays the trace into every simulator: 0, EXIT_TRACE or EXIT_SYSTEM. */
static int replay(const char *path, FILE *f, ratchet_cache_sim **sims,
                  size_t nsims) {
  static unsigned char buf[BLOCK * RECORD_BYTES];
  uint64_t offset = 0;
  for (;;) {
    size_t got = fread(buf, 1, sizeof buf, f);
    if (ferror(f)) {
      fprintf(stderr, "%s: %s: read error: %s\n", prog, path, strerror(errno));
      return EXIT_SYSTEM;
    }
    size_t whole = got / RECORD_BYTES;
    for (size_t r = 0; r < whole; r++) {
      const unsigned char *rec = buf + r * RECORD_BYTES;
      uint64_t id = le64(rec + 4);
      uint32_t size = le32(rec + 12);
      for (size_t i = 0; i < nsims; i++)
        if (ratchet_cache_sim_access(sims[i], id, size) < 0) {
          fprintf(stderr, "%s: out of memory\n", prog);
          return EXIT_SYSTEM;
        }
    }
    offset += (uint64_t)whole * RECORD_BYTES;
    if (got % RECORD_BYTES != 0) {
      fprintf(stderr,
              "%s: %s: truncated record at byte %llu (the file ends %zu "
              "bytes into a %d-byte record)\n",
              prog, path, (unsigned long long)offset, got % RECORD_BYTES,
              RECORD_BYTES);
      return EXIT_TRACE;
    }
    if (got < sizeof buf)
      return 0;
  }
}

int main(int argc, char **argv) {
  const char *policy_arg = NULL, *size_arg = NULL, *trace = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    const char *flag = NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strncmp(a, "--policy", 8) == 0 && (a[8] == '\0' || a[8] == '=')) {
      slot = &policy_arg;
      flag = "--policy";
    } else if (strncmp(a, "--size", 6) == 0 && (a[6] == '\0' || a[6] == '=')) {
      slot = &size_arg;
      flag = "--size";
    } else if (strcmp(a, "--") == 0) {
      if (i + 2 != argc || trace != NULL)
        return usage_error("expected exactly one TRACE");
      trace = argv[i + 1];
      break;
    } else if (a[0] == '-' && a[1] != '\0') {
      return usage_error("unknown option '%s'", a);
    } else {
      if (trace != NULL)
        return usage_error("more than one TRACE: '%s' and '%s'", trace, a);
      trace = a;
      continue;
    }
    const char *eq = strchr(a, '=');
    if (eq != NULL) {
      *slot = eq + 1;
    } else {
      if (i + 1 >= argc)
        return usage_error("%s needs a value", flag);
      *slot = argv[++i];
    }
  }
  if (policy_arg == NULL)
    return usage_error("missing --policy (s3fifo, sieve, lru or fifo)");
  if (size_arg == NULL)
    return usage_error("missing --size BYTES[,BYTES...]");
  if (trace == NULL)
    return usage_error("missing TRACE (an oracleGeneral trace file)");

  struct list policies = {NULL, 0, NULL, 0}, sizes = {NULL, 0, NULL, 0};
  int status = 0;
  size_t nsims = 0;
  ratchet_cache_sim **sims = NULL;
  FILE *f = NULL;
  int r = split(policy_arg, policy_item, &policies);
  if (r == -EINVAL) {
    status = usage_error("--policy: bad value '%.*s' (want s3fifo, sieve, lru "
                         "or fifo, comma-separated)",
                         policies.bad_len, policies.bad);
    goto done;
  }
  if (r == 0 && (r = split(size_arg, size_item, &sizes)) == -EINVAL) {
    status = usage_error("--size: bad value '%.*s' (want a positive number of "
                         "bytes, optional suffix k, m, g or t; "
                         "comma-separated)",
                         sizes.bad_len, sizes.bad);
    goto done;
  }
  nsims = policies.n * sizes.n;
  if (r != 0 || (sims = calloc(nsims, sizeof *sims)) == NULL) {
    fprintf(stderr, "%s: out of memory\n", prog);
    status = EXIT_SYSTEM;
    goto done;
  }
  for (size_t p = 0; p < policies.n; p++)
    for (size_t s = 0; s < sizes.n; s++) {
      ratchet_cache_sim_options o = RATCHET_CACHE_SIM_OPTIONS_INIT;
      o.policy = (ratchet_cache_policy)policies.v[p];
      o.capacity_bytes = sizes.v[s];
      int err = ratchet_cache_sim_new(&o, &sims[p * sizes.n + s]);
      if (err != 0) {
        fprintf(stderr, "%s: cannot create a simulator: %s\n", prog,
                ratchet_strerror(err));
        status = EXIT_SYSTEM;
        goto done;
      }
    }
  f = fopen(trace, "rb");
  if (f == NULL) {
    fprintf(stderr, "%s: cannot open trace '%s': %s\n", prog, trace,
            strerror(errno));
    status = EXIT_SYSTEM;
    goto done;
  }
  status = replay(trace, f, sims, nsims);
  if (status != 0)
    goto done;
  for (size_t i = 0; i < nsims; i++) {
    ratchet_cache_sim_stats st;
    ratchet_cache_sim_stats_get(sims[i], &st);
    printf("policy=%s size=%llu requests=%llu misses=%llu miss_ratio=%.6f\n",
           ratchet_cache_policy_name(
               (ratchet_cache_policy)policies.v[i / sizes.n]),
           (unsigned long long)sizes.v[i % sizes.n],
           (unsigned long long)st.requests, (unsigned long long)st.misses,
           st.requests == 0 ? 0.0 : (double)st.misses / (double)st.requests);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "%s: cannot write the results: %s\n", prog,
            strerror(errno));
    status = EXIT_SYSTEM;
  }
done:
  if (f != NULL)
    fclose(f);
  for (size_t i = 0; sims != NULL && i < nsims; i++)
    ratchet_cache_sim_free(sims[i]);
  free(sims);
  free(policies.v);
  free(sizes.v);
  return status;
}
