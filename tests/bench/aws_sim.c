/*
 * aws_sim.c - aws-backoff-sim: the AWS Architecture Blog experiment
 * "Exponential Backoff And Jitter" (Marc Brooker, 2015), run with
 * ratchet_backoff_delay().
 *
 * The model is the one of AWS's simulator (aws-samples/
 * aws-arch-backoff-simulator): N clients (100) all start at time 0 and each
 * wants to update one database row once, under optimistic concurrency. A
 * client reads the row's version, then writes conditionally on it; the
 * server accepts the write only if the version is still the one read (and
 * then bumps it), so when several clients read the same version only the
 * first write to arrive succeeds. A client whose write failed backs off and
 * starts again with a read; it is done when its write succeeds. Every message
 * (read request, read reply, write request, write reply) crosses the network
 * with a delay of |N(10 ms, 2 ms)|, as in AWS's Net(10, 2); the normal
 * deviate is the Irwin-Hall sum of 12 uniforms from ratchet_rng, minus 6,
 * which needs no libm. So an attempt takes about 40 ms plus the backoff.
 *
 * Backoff: base 5 ms, cap 2 s. AWS's code counts the failed attempts from 1
 * and sleeps min(cap, base * 2^attempt), so its first sleep is 10 ms; in
 * ratchet's numbering (retry 1 sleeps `initial`) that is retry attempt + 1,
 * which is what this program passes. Decorrelated jitter ignores the retry
 * number: min(cap, U(base, 3 * previous sleep)), the first previous sleep
 * taken as base, as both AWS's code and ratchet's do.
 *
 * "calls" are conditional writes, the quantity AWS's simulator counts
 * (every write follows exactly one read, so requests = 2 x calls); "done" is
 * the time the last client's write succeeded. Both are averaged over the
 * seeds. It is a discrete-event simulation on a virtual clock: a binary heap
 * holds each client's one pending message, ordered by time and then by
 * sequence number, so a run is a pure function of its seed.
 *
 * Exit status: 0 when full jitter needs clearly fewer calls than plain
 * exponential backoff (ratio < 0.75; AWS found about 0.5), 1 when it does
 * not, 100 for a usage error, 111 when memory runs out. The check is meant
 * for AWS's setup: jitter pays off under contention, so with a handful of
 * clients (--clients 10 gives about 0.78) the two strategies come close and
 * the check fails by design.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratchet/backoff.h"
#include "ratchet/rng.h"

#define PROG        "aws-backoff-sim"
#define EXIT_CHECK  1
#define EXIT_USAGE  100
#define EXIT_SYSTEM 111

#define NET_MEAN_NS (10 * RATCHET_NS_PER_MS)
#define NET_SD_NS   (2 * RATCHET_NS_PER_MS)
#define BASE_NS     (5 * RATCHET_NS_PER_MS)
#define CAP_NS      (2 * RATCHET_NS_PER_S)

#define CLIENTS_DEFAULT 100
#define CLIENTS_MIN     2
#define CLIENTS_MAX     1000
#define SEEDS_DEFAULT   20
#define SEEDS_MIN       1
#define SEEDS_MAX       1000
#define PASS_RATIO      0.75

/* A strategy: a jitter mode over AWS's capped exponential, or none at all
 * (retry at once, AWS's NoBackoff baseline). */
typedef struct strategy {
  const char *name;
  int backoff;
  ratchet_jitter jitter;
} strategy;

static const strategy strategies[] = {
    {"no backoff", 0, RATCHET_JITTER_NONE},
    {"exponential", 1, RATCHET_JITTER_NONE},
    {"full jitter", 1, RATCHET_JITTER_FULL},
    {"equal jitter", 1, RATCHET_JITTER_EQUAL},
    {"decorrelated", 1, RATCHET_JITTER_DECORRELATED},
};
#define NSTRATEGIES (sizeof strategies / sizeof strategies[0])
#define EXPONENTIAL 1
#define FULL_JITTER 2

/* The four messages of one attempt, named by where they arrive. */
typedef enum kind {
  READ_AT_SERVER,
  READ_REPLY_AT_CLIENT,
  WRITE_AT_SERVER,
  WRITE_REPLY_AT_CLIENT
} kind;

typedef struct event {
  uint64_t t_ns;
  uint64_t seq; /* breaks ties in time so the order never depends on heap */
  uint32_t client;
  kind what;
  uint64_t value; /* the version read, or 1/0 for a write's success */
} event;

typedef struct client {
  uint64_t version;  /* the version its pending write is conditional on */
  uint32_t failures; /* failed writes so far */
  uint64_t prev_ns;  /* its last backoff, for decorrelated jitter */
} client;

typedef struct sim {
  event *heap;
  size_t len;
  uint64_t seq;
  client *clients;
  ratchet_rng net, jitter;
} sim;

typedef struct result {
  uint64_t calls;   /* conditional writes */
  uint64_t done_ns; /* when the last client succeeded */
} result;

static int before(const event *a, const event *b) {
  return a->t_ns != b->t_ns ? a->t_ns < b->t_ns : a->seq < b->seq;
}

static void heap_push(sim *s, uint64_t t_ns, uint32_t c, kind what,
                      uint64_t value) {
  event e = {t_ns, s->seq++, c, what, value};
  size_t i = s->len++;
  while (i > 0 && before(&e, &s->heap[(i - 1) / 2])) {
    s->heap[i] = s->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  s->heap[i] = e;
}

static event heap_pop(sim *s) {
  event top = s->heap[0], last = s->heap[--s->len];
  size_t i = 0;
  for (;;) {
    size_t kid = 2 * i + 1;
    if (kid >= s->len)
      break;
    if (kid + 1 < s->len && before(&s->heap[kid + 1], &s->heap[kid]))
      kid++;
    if (!before(&s->heap[kid], &last))
      break;
    s->heap[i] = s->heap[kid];
    i = kid;
  }
  if (s->len > 0)
    s->heap[i] = last;
  return top;
}

/* One network hop: |N(mean, sd)|, the normal deviate approximated by the
 * Irwin-Hall sum of 12 uniforms minus 6 (mean 0, variance 1). */
static uint64_t net_delay(sim *s) {
  double z = -6.0;
  for (int i = 0; i < 12; i++)
    z += ratchet_rng_unit(ratchet_rng_next(&s->net));
  double d = (double)NET_MEAN_NS + (double)NET_SD_NS * z;
  return (uint64_t)(d < 0.0 ? -d : d);
}

/* Runs one simulation of n clients; returns its totals. The heap and
 * client arrays are the caller's, sized for n. */
static result run(sim *s, uint32_t n, const strategy *st,
                  const ratchet_backoff_options *o) {
  result r = {0, 0};
  uint64_t version = 0;
  s->len = 0;
  s->seq = 0;
  for (uint32_t c = 0; c < n; c++) {
    s->clients[c] = (client){0, 0, 0};
    heap_push(s, net_delay(s), c, READ_AT_SERVER, 0);
  }
  while (s->len > 0) {
    event e = heap_pop(s);
    client *cl = &s->clients[e.client];
    switch (e.what) {
    case READ_AT_SERVER:
      heap_push(s, e.t_ns + net_delay(s), e.client, READ_REPLY_AT_CLIENT,
                version);
      break;
    case READ_REPLY_AT_CLIENT:
      cl->version = e.value;
      heap_push(s, e.t_ns + net_delay(s), e.client, WRITE_AT_SERVER, 0);
      break;
    case WRITE_AT_SERVER: {
      int ok = cl->version == version;
      r.calls++;
      if (ok)
        version++;
      heap_push(s, e.t_ns + net_delay(s), e.client, WRITE_REPLY_AT_CLIENT,
                (uint64_t)ok);
      break;
    }
    case WRITE_REPLY_AT_CLIENT: {
      if (e.value) {
        r.done_ns = e.t_ns; /* events pop in time order: the last is latest */
        break;
      }
      cl->failures++;
      uint64_t wait = 0;
      if (st->backoff) {
        wait = ratchet_backoff_delay(o, cl->failures + 1, cl->prev_ns,
                                     ratchet_rng_next(&s->jitter));
        cl->prev_ns = wait;
      }
      heap_push(s, e.t_ns + net_delay(s) + wait, e.client, READ_AT_SERVER, 0);
      break;
    }
    }
  }
  return r;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROG " [--clients N] [--seeds N]\n"
          "\n"
          "Reproduces the AWS Architecture Blog experiment \"Exponential "
          "Backoff\n"
          "And Jitter\": N clients update one row under optimistic "
          "concurrency,\n"
          "backing off (base 5 ms, cap 2 s) after each failed conditional "
          "write.\n"
          "Prints the mean calls (writes) and completion time per strategy.\n"
          "\n"
          "  --clients N  contending clients, %d..%d (default %d)\n"
          "  --seeds N    runs averaged per strategy, %d..%d (default %d)\n"
          "  --help       this text\n"
          "\n"
          "Exit status: 0 when full jitter needs fewer than %.2f x the calls "
          "of\n"
          "plain exponential backoff, 1 when it does not, %d for a usage "
          "error,\n"
          "%d when out of memory.\n",
          CLIENTS_MIN, CLIENTS_MAX, CLIENTS_DEFAULT, SEEDS_MIN, SEEDS_MAX,
          SEEDS_DEFAULT, PASS_RATIO, EXIT_USAGE, EXIT_SYSTEM);
}

/* Parses a whole decimal number in [lo, hi] for `flag`; prints the error
 * and returns -1 when text is not one. */
static int parse_count(const char *flag, const char *text, unsigned long lo,
                       unsigned long hi, unsigned long *out) {
  char *end = NULL;
  errno = 0;
  unsigned long v = 0;
  /* strtoul skips blanks and accepts a sign; a count has neither. */
  if (text[0] >= '0' && text[0] <= '9')
    v = strtoul(text, &end, 10);
  if (end == NULL || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
    fprintf(stderr, PROG ": %s: '%s' is not a whole number from %lu to %lu\n",
            flag, text, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

/* Matches argv[*i] against `--name N` or `--name=N`; on a match parses the
 * value into *out (advancing *i past it) and returns 1, or -1 on a bad or
 * missing value. Returns 0 when the argument is another one. */
static int take_flag(int argc, char **argv, int *i, const char *name,
                     unsigned long lo, unsigned long hi, unsigned long *out) {
  const char *arg = argv[*i];
  size_t len = strlen(name);
  if (strncmp(arg, name, len) != 0)
    return 0;
  if (arg[len] == '=')
    return parse_count(name, arg + len + 1, lo, hi, out) == 0 ? 1 : -1;
  if (arg[len] != '\0')
    return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr,
            PROG ": %s needs a value (a whole number from %lu to %lu)\n", name,
            lo, hi);
    return -1;
  }
  ++*i;
  return parse_count(name, argv[*i], lo, hi, out) == 0 ? 1 : -1;
}

int main(int argc, char **argv) {
  unsigned long nclients = CLIENTS_DEFAULT, nseeds = SEEDS_DEFAULT;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    int rc = take_flag(argc, argv, &i, "--clients", CLIENTS_MIN, CLIENTS_MAX,
                       &nclients);
    if (rc == 0)
      rc = take_flag(argc, argv, &i, "--seeds", SEEDS_MIN, SEEDS_MAX, &nseeds);
    if (rc == 0) {
      fprintf(stderr, PROG ": unknown argument '%s' (try --help)\n", argv[i]);
      return EXIT_USAGE;
    }
    if (rc < 0)
      return EXIT_USAGE;
  }

  sim s;
  memset(&s, 0, sizeof s);
  s.heap = malloc(nclients * sizeof *s.heap);
  s.clients = malloc(nclients * sizeof *s.clients);
  if (s.heap == NULL || s.clients == NULL) {
    fprintf(stderr, PROG ": out of memory\n");
    free(s.heap);
    free(s.clients);
    return EXIT_SYSTEM;
  }

  ratchet_backoff_options o = RATCHET_BACKOFF_OPTIONS_INIT;
  o.kind = RATCHET_BACKOFF_EXPONENTIAL;
  o.initial_ns = BASE_NS;
  o.max_delay_ns = CAP_NS;
  o.multiplier = 2.0;
  o.max_attempts = 0;

  double calls[NSTRATEGIES], done_ms[NSTRATEGIES];
  for (size_t k = 0; k < NSTRATEGIES; k++) {
    o.jitter = strategies[k].jitter;
    if (ratchet_backoff_validate(&o) != 0) {
      fprintf(stderr, PROG ": backoff options refused for %s\n",
              strategies[k].name);
      free(s.heap);
      free(s.clients);
      return EXIT_SYSTEM;
    }
    uint64_t sum_calls = 0, sum_done = 0;
    for (unsigned long seed = 0; seed < nseeds; seed++) {
      /* The same network noise for every strategy under one seed; the jitter
       * draws come from a stream of their own. */
      ratchet_rng_seed(&s.net, seed);
      ratchet_rng_seed(&s.jitter, seed ^ UINT64_C(0x6a09e667f3bcc909));
      result r = run(&s, (uint32_t)nclients, &strategies[k], &o);
      sum_calls += r.calls;
      sum_done += r.done_ns;
    }
    calls[k] = (double)sum_calls / (double)nseeds;
    done_ms[k] = (double)sum_done / (double)nseeds / (double)RATCHET_NS_PER_MS;
  }
  free(s.heap);
  free(s.clients);

  printf("AWS \"Exponential Backoff And Jitter\" with ratchet_backoff_delay\n"
         "%lu clients on one OCC row, base 5 ms, cap 2 s, network "
         "|N(10 ms, 2 ms)| per message,\n"
         "mean of %lu seeds. calls = conditional writes (AWS's count; "
         "requests = 2 x calls).\n\n",
         nclients, nseeds);
  printf("%-14s %10s %14s %14s\n", "strategy", "calls", "failed writes",
         "last done ms");
  for (size_t k = 0; k < NSTRATEGIES; k++)
    printf("%-14s %10.1f %14.1f %14.1f\n", strategies[k].name, calls[k],
           calls[k] - (double)nclients, done_ms[k]);

  double ratio = calls[FULL_JITTER] / calls[EXPONENTIAL];
  printf("\ncalls(full jitter) / calls(exponential) = %.3f\n", ratio);
  if (nclients == CLIENTS_DEFAULT)
    printf("AWS's post, same setup: ~780 / ~1,600 = ~0.49\n");
  if (ratio < PASS_RATIO) {
    printf("verdict: PASS - full jitter needs %.0f%% of the calls of plain "
           "exponential backoff (AWS: about half)\n",
           100.0 * ratio);
    return 0;
  }
  printf("verdict: FAIL - full jitter needs %.0f%% of the calls of plain "
         "exponential backoff, not under %.0f%%\n",
         100.0 * ratio, 100.0 * PASS_RATIO);
  return EXIT_CHECK;
}
