/*
 * store_private.h - what the files of the persistent tier (store*.c) share,
 * private to libratchet-caching.
 *
 * The handle (struct ratchet_store), the sizes of the rows every table is
 * made of, the byte-order helpers that encode them, and the internal
 * functions one file of the tier offers the others: failure messages
 * (store.c), the format check on open (store_format.c), the record and its
 * checksum (store_record.c), write transactions and entry removal
 * (store_txn.c), and collection (store_gc.c). Functions that return an
 * LMDB code say so; the public functions map those codes to ratchet's with
 * ratchet__store_fail_mdb, so that LMDB's own codes never leak.
 */
#ifndef RATCHET_CACHING_STORE_PRIVATE_H
#define RATCHET_CACHING_STORE_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <lmdb.h>

#include "ratchet/store.h"

#define REC_HEADER 48u
#define KEY_BYTES  16u
#define IDX_BYTES  24u /* time (8) + key (16) */

/* How to get out of a damaged or foreign store, appended to messages. */
#define REBUILD_HINT                                                           \
  "the cache can be rebuilt from scratch: run `ratchet cache clear`, call "    \
  "ratchet_store_destroy(), or delete the directory"

struct ratchet_store {
  MDB_env *env;
  MDB_dbi meta, entries, atimes, lru, exp, names;
  char *dir;
  dev_t dev;
  ino_t ino;
  struct ratchet_store *reg_next;
  uint64_t max_bytes, max_age_ms, default_ttl_ms, touch_interval_ms;
  /* Held shared by every transaction for its whole life, exclusively to
   * adopt a map another process grew (store_txn.c); remaps counts those,
   * written only under the exclusive hold. */
  pthread_rwlock_t remap;
  uint64_t remaps;
  _Atomic uint64_t hits, misses, puts, expirations, evictions, corrupt;
};

/* ---- messages (store.c) ---- */

/* Writes a message into the thread-local buffer that
 * ratchet_store_last_error() returns, and returns rc. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
int ratchet__store_fail(int rc, const char *fmt, ...);

/* Reports an LMDB failure of `what` on store s (NULL: unknown) and returns
 * the matching ratchet code. */
int ratchet__store_fail_mdb(const ratchet_store *s, int rc, const char *what);

/* Whether an LMDB or errno result means the map or the disk is full. */
bool ratchet__store_is_full(int rc);

/* ---- byte order ---- */

static inline void ratchet__store_put_u32le(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static inline void ratchet__store_put_u64le(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static inline void ratchet__store_put_u64be(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static inline uint32_t ratchet__store_get_u32le(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static inline uint64_t ratchet__store_get_u64le(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static inline uint64_t ratchet__store_get_u64be(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static inline MDB_val ratchet__store_val(const void *p, size_t n) {
  MDB_val v;
  v.mv_size = n;
  v.mv_data = (void *)(uintptr_t)p; /* LMDB's API is not const-correct */
  return v;
}

/* An index row (lru, exp): the time, big-endian so that rows sort by it,
 * then the key. */
static inline void ratchet__store_idx_key(unsigned char out[IDX_BYTES],
                                          uint64_t t,
                                          const unsigned char k[KEY_BYTES]) {
  ratchet__store_put_u64be(out, t);
  memcpy(out + 8, k, KEY_BYTES);
}

/* ---- the open-time checks (store_format.c) ---- */

/* Refuses a data file shorter than its last page: 0, or a ratchet code with
 * a message. */
int ratchet__store_check_length(ratchet_store *s);

/* Checks the format record and opens the tables, creating them in a fresh
 * store: 0, or a ratchet code with a message. */
int ratchet__store_check_format(ratchet_store *s);

/* ---- records (store_record.c) ---- */

/* A record parsed in place: the pointers point into the LMDB value. */
struct ratchet__store_rec {
  uint32_t manifest_len;
  uint64_t value_len, created_ms, expires_ms, sum_hi, sum_lo;
  const unsigned char *header, *manifest, *value;
  size_t size;
};

/* Whether the record v still starts with the first hlen (<= REC_HEADER)
 * bytes a reader saw: the header holds the times and the checksum, so a
 * record written since differs. For deleting only what was judged. */
static inline bool ratchet__store_rec_same(const MDB_val *v,
                                           const unsigned char *header,
                                           size_t hlen) {
  return v->mv_size >= hlen && memcmp(v->mv_data, header, hlen) == 0;
}

/* Parses a record's header and checks its sizes (not its checksum). */
bool ratchet__store_rec_parse(const MDB_val *v, struct ratchet__store_rec *r);

/* Whether a parsed record's checksum matches, found under key k. */
bool ratchet__store_rec_verify(const unsigned char k[KEY_BYTES],
                               const struct ratchet__store_rec *r);

/* Writes the record of key k into p, which has room for REC_HEADER + mlen +
 * vlen bytes: the header, the manifest, the value, and the checksum. */
void ratchet__store_rec_write(unsigned char *p,
                              const unsigned char k[KEY_BYTES],
                              const void *manifest, size_t mlen,
                              const void *value, size_t vlen,
                              uint64_t created_ms, uint64_t expires_ms);

/* ---- transactions and entry rows (store_txn.c) ---- */

/* Begins a transaction, adopting a map another process grew. LMDB code.
 * The transaction holds s->remap shared: end it only with
 * ratchet__store_txn_abort or ratchet__store_txn_commit. */
int ratchet__store_txn_begin(ratchet_store *s, unsigned flags, MDB_txn **txn);

/* Aborts a transaction of ratchet__store_txn_begin and drops its hold. */
void ratchet__store_txn_abort(ratchet_store *s, MDB_txn *txn);

/* Commits a transaction of ratchet__store_txn_begin (aborted on failure)
 * and drops its hold. LMDB code. */
int ratchet__store_txn_commit(ratchet_store *s, MDB_txn *txn);

/* A write transaction and the statistics it carries. */
struct ratchet__store_wtx {
  MDB_txn *txn;
  uint64_t entries, bytes;
  ratchet_store_gc_result gc;
};

/* Begins a write transaction and reads the statistics record. LMDB code;
 * on failure there is no transaction to abort. */
int ratchet__store_wtx_begin(ratchet_store *s, struct ratchet__store_wtx *w);

/* Writes the statistics record back and commits; on failure the transaction
 * is gone (aborted). LMDB code. */
int ratchet__store_wtx_commit(ratchet_store *s, struct ratchet__store_wtx *w);

/* Deletes a key from a database, treating "not there" as done. LMDB code. */
int ratchet__store_del_quiet(MDB_txn *txn, MDB_dbi dbi, const void *k,
                             size_t n);

/* Removes an entry and its index rows inside w, adjusting w's statistics.
 * LMDB code: MDB_NOTFOUND if it is absent. */
int ratchet__store_del_entry(ratchet_store *s, struct ratchet__store_wtx *w,
                             const unsigned char k[KEY_BYTES]);

/* ---- collection (store_gc.c) ---- */

/*
 * Collects inside w: expired entries, entries idle beyond max_age (each up
 * to `budget`, 0: no limit), then the least recently used until the
 * logical size is at most `target`. LMDB code.
 */
int ratchet__store_collect(ratchet_store *s, struct ratchet__store_wtx *w,
                           uint64_t now_ms, uint64_t budget, uint64_t target);

/* Adds a committed collection to the store's counters. */
void ratchet__store_count_gc(ratchet_store *s,
                             const ratchet_store_gc_result *g);

/* Frees at least `goal` bytes (or empties the store) after MDB_MAP_FULL or
 * ENOSPC, in transactions of its own. LMDB code. */
int ratchet__store_make_room(ratchet_store *s, uint64_t goal);

#endif /* RATCHET_CACHING_STORE_PRIVATE_H */
