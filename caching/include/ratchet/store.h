/*
 * ratchet/store.h - the persistent tier of the task result cache, on LMDB.
 *
 * A store is a directory (created 0700) holding an LMDB environment
 * (data.mdb and lock.mdb, created 0600). It maps 128-bit keys to values
 * with metadata: creation time, expiry, the key's manifest, and an xxh3-128
 * checksum over all of it. Several threads and several processes may use one
 * store at once: LMDB serialises writers and never blocks readers.
 *
 * Guarantees:
 *  - Crash consistency. Every change is one LMDB transaction: after kill -9
 *    (or, with the default durability, a power cut) the store opens without
 *    a recovery step and holds exactly the last committed transactions.
 *  - Never a wrong value. A get verifies the checksum of the record it
 *    read; a mismatch is reported as RATCHET_ECACHE_CORRUPT and the entry is
 *    deleted. A file that is not a ratchet store, is truncated, or is too
 *    damaged for LMDB is refused with RATCHET_ECACHE_CORRUPT; one written
 *    by a newer format with RATCHET_ECACHE_VERSION. Each failure leaves a
 *    message naming the path and the remedy in ratchet_store_last_error();
 *    ratchet_store_destroy() removes a store so that it can be rebuilt.
 *  - Bounded size. The logical size (values, manifests, and 64 bytes of
 *    key and header each) is kept under max_bytes by removing the least
 *    recently used entries; entries idle longer than max_age_ms and expired
 *    entries are removed too. A full map or a full disk triggers a
 *    collection and one retry before RATCHET_ECACHE_FULL.
 *
 * Time: persisted timestamps need the wall clock, so every function that
 * needs the time takes now_ms, milliseconds since the Unix epoch
 * (ratchet_store_now_ms() reads it). Tests pass any value they like.
 *
 * Limits (LMDB's): open a directory at most once per process (a second open
 * in the same process fails with -EBUSY; share the ratchet_store between
 * threads instead), and never use a store across fork(). The data file never
 * shrinks: freed pages are reused, and ratchet_store_destroy() gives the
 * space back. The directory must be on a local file system (LMDB's lock
 * file relies on shared memory).
 */
#ifndef RATCHET_STORE_H
#define RATCHET_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"
#include "ratchet/key.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ratchet_store ratchet_store;

/* The format this library writes and reads. */
#define RATCHET_STORE_FORMAT 1

/* How hard a commit tries to reach the disk. */
typedef enum ratchet_store_durability {
  /* fsync data and meta page on every commit: survives power loss. */
  RATCHET_STORE_SYNC = 0,
  /* fsync data, not the meta page (MDB_NOMETASYNC): a power cut may undo
   * the last commit, never corrupt. About one fsync per commit less. */
  RATCHET_STORE_NOMETASYNC = 1,
  /* no fsync (MDB_NOSYNC): a killed process loses nothing (the kernel has
   * the pages), but a power cut or kernel crash may lose recent commits or,
   * on file systems that reorder writes, corrupt the store (then detected
   * on open or by checksums, and rebuilt). Many times faster for writes;
   * ratchet_store_sync() flushes by hand. */
  RATCHET_STORE_NOSYNC = 2
} ratchet_store_durability;

/*
 * Options. Valid ranges (ratchet_store_open refuses others with -EINVAL):
 *   dir                NULL: ratchet_store_default_dir()             [NULL]
 *   max_bytes          >= 4096; the logical size cap               [1 GiB]
 *   map_size           0 (2 * max_bytes + 64 MiB) or >= 128 KiB; the LMDB
 *                      map, an upper bound on data.mdb's size          [0]
 *   max_age_ms         0 (none) or the idle time after which an entry
 *                      is collected                                    [0]
 *   default_ttl_ms     0 (none) or the TTL of puts that give none      [0]
 *   touch_interval_ms  a hit records its time for LRU and max_age if the
 *                      recorded one is older than this (a write); 0: never,
 *                      then "least recently used" means "oldest put" [1 h]
 *   durability         see above                                    [SYNC]
 *   max_readers        1 .. 32767 concurrent read transactions      [126]
 *   rebuild_if_corrupt non-zero: a store refused as corrupt is destroyed
 *                      and created empty (the message stays in
 *                      ratchet_store_last_error())                     [0]
 */
typedef struct ratchet_store_options {
  const char *dir;
  uint64_t max_bytes;
  uint64_t map_size;
  uint64_t max_age_ms;
  uint64_t default_ttl_ms;
  uint64_t touch_interval_ms;
  ratchet_store_durability durability;
  unsigned max_readers;
  int rebuild_if_corrupt;
} ratchet_store_options;

/* clang-format off */
#define RATCHET_STORE_OPTIONS_INIT {                                            \
    .dir = NULL,                                                               \
    .max_bytes = UINT64_C(1) << 30,                                            \
    .map_size = 0,                                                             \
    .max_age_ms = 0,                                                           \
    .default_ttl_ms = 0,                                                       \
    .touch_interval_ms = UINT64_C(3600000),                                    \
    .durability = RATCHET_STORE_SYNC,                                          \
    .max_readers = 126,                                                        \
    .rebuild_if_corrupt = 0}
/* clang-format on */

/* A TTL that means "never expires", even when the store has a default. */
#define RATCHET_STORE_TTL_NEVER UINT64_MAX

/*
 * Per-put options:
 *   ttl_ms    0: the store's default_ttl_ms; RATCHET_STORE_TTL_NEVER; or ms
 *   manifest  the key's manifest (ratchet_key_manifest), stored beside the
 *             value (copied); NULL with manifest_len 0 for none
 *   name      a task name (1 .. 400 bytes, NUL-terminated) under which the
 *             manifest is also remembered for ratchet_store_last_manifest;
 *             NULL for none
 */
typedef struct ratchet_store_put_options {
  uint64_t ttl_ms;
  const void *manifest;
  size_t manifest_len;
  const char *name;
} ratchet_store_put_options;

#define RATCHET_STORE_PUT_OPTIONS_INIT                                         \
  { 0, NULL, 0, NULL }

/* What a get saw besides the value. */
typedef struct ratchet_store_meta {
  uint64_t created_ms;
  uint64_t expires_ms; /* 0: never */
  uint64_t value_len;
  uint64_t manifest_len;
} ratchet_store_meta;

/* Counters: entries, bytes, names and file_bytes are the store's now (all
 * processes); the rest count this process's calls since open. */
typedef struct ratchet_store_stats {
  uint64_t entries, bytes, names;
  uint64_t max_bytes, map_size, file_bytes;
  uint64_t hits, misses, puts, expirations, evictions, corrupt;
} ratchet_store_stats;

/* What one collection removed. */
typedef struct ratchet_store_gc_result {
  uint64_t expired, idle, evicted, bytes_freed;
} ratchet_store_gc_result;

/*
 * The default directory: $XDG_CACHE_HOME/ratchet/store if XDG_CACHE_HOME is
 * an absolute path, else $HOME/.cache/ratchet/store. Writes it (NUL-
 * terminated) to buf. Returns 0; -ENOENT if neither variable is usable;
 * -ENAMETOOLONG if buf is too small.
 */
RATCHET_API int ratchet_store_default_dir(char *buf, size_t len);

/*
 * Opens (creating if needed, with missing parent directories, all 0700) the
 * store in o->dir. Returns 0 and *out, or:
 *   -EINVAL           bad options
 *   -EBUSY            this process already has the directory open
 *   RATCHET_ECACHE_CORRUPT  not a ratchet store, truncated, or damaged
 *   RATCHET_ECACHE_VERSION  written by a newer format (or an incompatible
 *                     LMDB); never modified then
 *   RATCHET_ECACHE_FULL     no space to create it
 *   -ENOMEM, or a negated errno from the file system (-EACCES, -ENOTDIR...)
 * On failure *out is unchanged and ratchet_store_last_error() says what was
 * wrong with which path and how to rebuild. Thread-safe.
 */
RATCHET_API int ratchet_store_open(const ratchet_store_options *o,
                                   ratchet_store **out);

/* Closes the store. No call may be in progress. NULL is a no-op. */
RATCHET_API void ratchet_store_close(ratchet_store *s);

/*
 * Removes the store in dir (data.mdb, lock.mdb, then the directory if it is
 * empty), to rebuild it from scratch. Other files are left alone. Returns 0
 * (also if nothing was there); -EBUSY if this process has it open; a
 * negated errno. Another process that has it open keeps its old copy until
 * it closes it.
 */
RATCHET_API int ratchet_store_destroy(const char *dir);

/*
 * Stores value (len bytes, copied) under key at now_ms, replacing any entry
 * with that key; po may be NULL. Expired and idle entries, then the least
 * recently used ones, are collected in the same transaction as needed to
 * stay under max_bytes. Returns 0, or:
 *   RATCHET_ECACHE_TOO_BIG  the record alone exceeds max_bytes
 *   RATCHET_ECACHE_FULL     map or disk full even after a collection
 *   -EINVAL, -ENOMEM, -EIO, RATCHET_ECACHE_CORRUPT
 * On failure nothing changed. Thread-safe; one write transaction (one fsync
 * with the default durability).
 */
RATCHET_API int ratchet_store_put(ratchet_store *s,
                                  const ratchet_cache_key *key,
                                  const void *value, size_t len,
                                  const ratchet_store_put_options *po,
                                  uint64_t now_ms);

/* One value for ratchet_store_put_batch. */
typedef struct ratchet_store_item {
  ratchet_cache_key key;
  const void *value;
  size_t len;
  ratchet_store_put_options opts;
} ratchet_store_item;

/* Stores n items in one transaction (one fsync): all or none. Same results
 * as ratchet_store_put; RATCHET_ECACHE_TOO_BIG also when the items' summed
 * logical size exceeds max_bytes (then nothing is written). */
RATCHET_API int ratchet_store_put_batch(ratchet_store *s,
                                        const ratchet_store_item *items,
                                        size_t n, uint64_t now_ms);

/*
 * Looks key up at now_ms. On a hit returns 0, *value (a copy: free with
 * ratchet_free; never NULL, even for an empty value), *len and, if meta is
 * not NULL, *meta. Otherwise:
 *   RATCHET_ECACHE_MISS     absent, or expired (then deleted)
 *   RATCHET_ECACHE_CORRUPT  the entry failed its checksum (then deleted:
 *                           the next get misses)
 *   -ENOMEM, -EIO
 * A hit may record the access time (see touch_interval_ms); that write's
 * failure does not change the result. Thread-safe.
 */
RATCHET_API int ratchet_store_get(ratchet_store *s,
                                  const ratchet_cache_key *key, uint64_t now_ms,
                                  void **value, size_t *len,
                                  ratchet_store_meta *meta);

/* Like ratchet_store_get, but fetches the entry's manifest (*len may be 0;
 * *manifest is then a valid empty allocation). */
RATCHET_API int ratchet_store_get_manifest(ratchet_store *s,
                                           const ratchet_cache_key *key,
                                           uint64_t now_ms, void **manifest,
                                           size_t *len);

/*
 * The manifest last put under the task name (see put's options), for
 * ratchet_key_explain: 0, *key and *manifest (free with ratchet_free);
 * RATCHET_ECACHE_MISS if that name was never put (or the store was cleared).
 * The manifest outlives its entry: it explains a miss after eviction too.
 */
RATCHET_API int ratchet_store_last_manifest(ratchet_store *s, const char *name,
                                            ratchet_cache_key *key,
                                            void **manifest, size_t *len);

/* The expiry (ms since the epoch; 0: never) that a put at now_ms with
 * ttl_ms (as in the put options) gets in this store. */
RATCHET_API uint64_t ratchet_store_expiry(const ratchet_store *s,
                                          uint64_t ttl_ms, uint64_t now_ms);

/* Removes key: 0, or RATCHET_ECACHE_MISS if absent. */
RATCHET_API int ratchet_store_invalidate(ratchet_store *s,
                                         const ratchet_cache_key *key);

/* Removes every entry and name. 0, or an error as for put. */
RATCHET_API int ratchet_store_clear(ratchet_store *s);

/*
 * A full collection at now_ms: every expired entry, every entry idle longer
 * than max_age_ms, then least recently used ones until the logical size is
 * at most max_bytes. Fills *r if not NULL. Returns 0 or an error as for put.
 */
RATCHET_API int ratchet_store_gc(ratchet_store *s, uint64_t now_ms,
                                 ratchet_store_gc_result *r);

/*
 * Reads every entry and checks its checksum, then deletes those that fail
 * in one write transaction - each only if it still holds the record that
 * failed, so that a value put again meanwhile survives. *bad (if not NULL)
 * gets the number deleted. Returns 0 or an error; on an error *bad is 0
 * and nothing was deleted. For `ratchet cache verify` and for tests;
 * O(size of the store).
 */
RATCHET_API int ratchet_store_verify(ratchet_store *s, uint64_t *bad);

/* Flushes to disk (for RATCHET_STORE_NOSYNC / NOMETASYNC). 0 or an error. */
RATCHET_API int ratchet_store_sync(ratchet_store *s);

/* Fills *st. Thread-safe. */
RATCHET_API void ratchet_store_stats_get(ratchet_store *s,
                                         ratchet_store_stats *st);

/* The store's directory (borrowed until close). */
RATCHET_API const char *ratchet_store_dir(const ratchet_store *s);

/*
 * The message of the last failed ratchet_store_* call in the calling thread
 * (as dlerror() does), naming the path, what was wrong, and the way out;
 * "" if none failed yet. Borrowed until this thread's next store call.
 */
RATCHET_API const char *ratchet_store_last_error(void);

/* The wall clock in ms since the Unix epoch (CLOCK_REALTIME). */
RATCHET_API uint64_t ratchet_store_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_STORE_H */
