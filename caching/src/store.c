/*
 * store.c - the persistent tier: task results in an LMDB environment.
 *
 * Layout. One environment per directory, six named databases:
 *   meta     "format" -> u32 LE format version; "writer" -> the ratchet
 *            version that created it; "stats" -> entries, bytes (u64 LE)
 *   entries  key (16 bytes) -> record (below), never modified in place
 *   atimes   key -> last access time (u64 BE, ms)
 *   lru      access time (u64 BE) | key -> empty: the eviction order
 *   exp      expiry time (u64 BE) | key -> empty: entries with a TTL
 *   names    task name -> key | manifest: the last manifest per task name
 * A record is a 48-byte header, the manifest, then the value:
 *   magic "REN1" | manifest_len u32 | value_len u64 | created_ms u64 |
 *   expires_ms u64 | xxh3-128 (hi, lo; u64 LE each)
 * all little-endian; the checksum covers the key, the first 32 header bytes,
 * the manifest and the value, so a record that is damaged, cut short or
 * found under another key never passes for a value.
 *
 * Every change (a put with its index rows, its statistics and the
 * collection it triggers) is one LMDB write transaction, so a crash at any
 * moment leaves the previous committed state: LMDB writes new pages beside
 * the old ones and flips one of two meta pages last, and needs no recovery
 * step. The access time lives outside the record so that a hit that
 * refreshes it rewrites 40 bytes of index, not the value; it is refreshed
 * only when older than touch_interval_ms, so most hits are read-only
 * transactions. The LRU clock never goes backwards (a put's access time is
 * at least the newest one in the index) so that a fresh entry is never the
 * first victim when the wall clock steps back.
 *
 * Failure policy. LMDB's own error codes are mapped to ratchet's (they fall
 * in ratchet's numeric range and must never leak); each failure writes a
 * message into a thread-local buffer (ratchet_store_last_error). Damage is
 * detected at three levels: on open (not an LMDB file, a file shorter than
 * its last page, a missing or inconsistent ratchet header, a newer format),
 * by LMDB while walking pages (MDB_CORRUPTED, MDB_PAGE_NOTFOUND) and by the
 * record checksum. A full map or disk (MDB_MAP_FULL, ENOSPC) triggers a
 * collection in its own transactions - pages freed by a committed
 * transaction are reusable - and one retry.
 *
 * LMDB forbids opening one environment twice in a process (closing either
 * would drop the other's locks), so open stores are registered by device
 * and inode and a second open fails with -EBUSY.
 */
#define _POSIX_C_SOURCE 200809L
#define XXH_STATIC_LINKING_ONLY
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <xxhash.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/store.h"
#include "ratchet/version.h"

#define REC_MAGIC      "REN1"
#define REC_HEADER     48u
#define REC_SUMMED     32u /* header bytes covered by the checksum */
#define KEY_BYTES      16u
#define IDX_BYTES      24u /* time (8) + key (16) */
#define NAME_MAX_BYTES 400u
#define STEP_BUDGET    256u /* expired/idle entries collected per put */
#define MIN_MAP        (UINT64_C(128) << 10)
#define ERRBUF         1024

struct ratchet_store {
  MDB_env *env;
  MDB_dbi meta, entries, atimes, lru, exp, names;
  char *dir;
  dev_t dev;
  ino_t ino;
  struct ratchet_store *reg_next;
  uint64_t max_bytes, max_age_ms, default_ttl_ms, touch_interval_ms;
  _Atomic uint64_t hits, misses, puts, expirations, evictions, corrupt;
};

/* ---- messages ---- */

static _Thread_local char last_err[ERRBUF];

const char *ratchet_store_last_error(void) {
  return last_err;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
fail(int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_err, sizeof last_err, fmt, ap);
  va_end(ap);
  return rc;
}

/* How to get out of a damaged or foreign store, appended to messages. */
#define REBUILD_HINT                                                           \
  "the cache can be rebuilt from scratch: run `ratchet cache clear`, call "    \
  "ratchet_store_destroy(), or delete the directory"

/* Maps an LMDB or errno result to ratchet's codes. LMDB's codes
 * (-30799 .. -30780) fall inside ratchet's own range: never return them. */
static int map_mdb(int rc) {
  switch (rc) {
  case MDB_SUCCESS:
    return 0;
  case MDB_NOTFOUND:
    return RATCHET_ECACHE_MISS;
  case MDB_MAP_FULL:
  case MDB_TXN_FULL:
  case ENOSPC:
  case EDQUOT:
  case EFBIG:
    return RATCHET_ECACHE_FULL;
  case MDB_CORRUPTED:
  case MDB_PAGE_NOTFOUND:
  case MDB_INVALID:
  case MDB_INCOMPATIBLE:
    return RATCHET_ECACHE_CORRUPT;
  case MDB_VERSION_MISMATCH:
    return RATCHET_ECACHE_VERSION;
  case MDB_READERS_FULL:
    return -EBUSY;
  case MDB_MAP_RESIZED:
    return -EAGAIN;
  case MDB_PANIC:
  case MDB_BAD_TXN:
    return -EIO;
  default:
    return rc > 0 ? -rc : -EIO;
  }
}

static bool is_full(int rc) {
  return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT || rc == EFBIG;
}

/* Reports an LMDB failure of `what` on store s. */
static int fail_mdb(const ratchet_store *s, int rc, const char *what) {
  int r = map_mdb(rc);
  const char *dir = s ? s->dir : "?";
  if (r == RATCHET_ECACHE_CORRUPT)
    return fail(r, "cache store %s is damaged (%s while %s); %s", dir,
                mdb_strerror(rc), what, REBUILD_HINT);
  if (rc == MDB_TXN_FULL)
    return fail(r,
                "cache store %s: one transaction is too large (%s); "
                "store fewer items per batch",
                dir, mdb_strerror(rc));
  if (r == RATCHET_ECACHE_FULL)
    return fail(r,
                "cache store %s is full (%s while %s): raise map_size, "
                "lower max_bytes, free disk space, or clear the cache",
                dir, mdb_strerror(rc), what);
  if (rc == MDB_PANIC)
    return fail(r,
                "cache store %s: LMDB hit a fatal I/O error (%s) while "
                "%s; close and reopen the store",
                dir, mdb_strerror(rc), what);
  return fail(r, "cache store %s: %s while %s", dir, mdb_strerror(rc), what);
}

/* ---- byte order ---- */

static void put_u32le(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64le(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64be(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint32_t get_u32le(const unsigned char *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t get_u64le(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t get_u64be(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static MDB_val val(const void *p, size_t n) {
  MDB_val v;
  v.mv_size = n;
  v.mv_data = (void *)(uintptr_t)p; /* LMDB's API is not const-correct */
  return v;
}

static void idx_key(unsigned char out[IDX_BYTES], uint64_t t,
                    const unsigned char k[KEY_BYTES]) {
  put_u64be(out, t);
  memcpy(out + 8, k, KEY_BYTES);
}

/* ---- records ---- */

struct rec {
  uint32_t manifest_len;
  uint64_t value_len, created_ms, expires_ms, sum_hi, sum_lo;
  const unsigned char *header, *manifest, *value;
  size_t size;
};

/* Parses a record's header and checks its sizes (not its checksum). */
static bool rec_parse(const MDB_val *v, struct rec *r) {
  const unsigned char *p = v->mv_data;
  if (v->mv_size < REC_HEADER || memcmp(p, REC_MAGIC, 4) != 0)
    return false;
  r->manifest_len = get_u32le(p + 4);
  r->value_len = get_u64le(p + 8);
  r->created_ms = get_u64le(p + 16);
  r->expires_ms = get_u64le(p + 24);
  r->sum_hi = get_u64le(p + 32);
  r->sum_lo = get_u64le(p + 40);
  size_t body = v->mv_size - REC_HEADER;
  if (r->manifest_len > body || r->value_len != body - r->manifest_len)
    return false;
  r->header = p;
  r->manifest = p + REC_HEADER;
  r->value = p + REC_HEADER + r->manifest_len;
  r->size = v->mv_size;
  return true;
}

static XXH128_hash_t rec_sum(const unsigned char k[KEY_BYTES],
                             const unsigned char *header, const void *manifest,
                             size_t mlen, const void *value, size_t vlen) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, k, KEY_BYTES);
  XXH3_128bits_update(&st, header, REC_SUMMED);
  if (mlen)
    XXH3_128bits_update(&st, manifest, mlen);
  if (vlen)
    XXH3_128bits_update(&st, value, vlen);
  return XXH3_128bits_digest(&st);
}

static bool rec_verify(const unsigned char k[KEY_BYTES], const struct rec *r) {
  XXH128_hash_t h = rec_sum(k, r->header, r->manifest, r->manifest_len,
                            r->value, (size_t)r->value_len);
  return h.high64 == r->sum_hi && h.low64 == r->sum_lo;
}

/* ---- transactions ---- */

static int txn_begin(ratchet_store *s, unsigned flags, MDB_txn **txn) {
  int rc = mdb_txn_begin(s->env, NULL, flags, txn);
  if (rc == MDB_MAP_RESIZED) {
    /* Another process grew the map: adopt its size and try again. */
    mdb_env_set_mapsize(s->env, 0);
    rc = mdb_txn_begin(s->env, NULL, flags, txn);
  }
  return rc;
}

/* A write transaction and the statistics it carries. */
struct wtx {
  MDB_txn *txn;
  uint64_t entries, bytes;
  ratchet_store_gc_result gc;
};

static int wtx_begin(ratchet_store *s, struct wtx *w) {
  MDB_val k = val("stats", 5), v;
  memset(w, 0, sizeof *w);
  int rc = txn_begin(s, 0, &w->txn);
  if (rc != 0)
    return rc;
  rc = mdb_get(w->txn, s->meta, &k, &v);
  if (rc == 0 && v.mv_size != 16)
    rc = MDB_CORRUPTED;
  if (rc != 0) {
    mdb_txn_abort(w->txn);
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  }
  w->entries = get_u64le(v.mv_data);
  w->bytes = get_u64le((const unsigned char *)v.mv_data + 8);
  return 0;
}

static int wtx_commit(ratchet_store *s, struct wtx *w) {
  unsigned char buf[16];
  MDB_val k = val("stats", 5), v = val(buf, 16);
  put_u64le(buf, w->entries);
  put_u64le(buf + 8, w->bytes);
  int rc = mdb_put(w->txn, s->meta, &k, &v, 0);
  if (rc != 0) {
    mdb_txn_abort(w->txn);
    return rc;
  }
  return mdb_txn_commit(w->txn);
}

/* The newest access time in the LRU index (0 if empty). */
static int lru_newest(ratchet_store *s, MDB_txn *txn, uint64_t *t) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, s->lru, &c);
  if (rc != 0)
    return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  mdb_cursor_close(c);
  *t = 0;
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != 0)
    return rc;
  if (k.mv_size != IDX_BYTES)
    return MDB_CORRUPTED;
  *t = get_u64be(k.mv_data);
  return 0;
}

/* Deletes a key from a database, treating "not there" as done. */
static int del_quiet(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t n) {
  MDB_val kv = val(k, n);
  int rc = mdb_del(txn, dbi, &kv, NULL);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Removes an entry and its index rows. MDB_NOTFOUND if it is absent. */
static int del_entry(ratchet_store *s, struct wtx *w,
                     const unsigned char k[KEY_BYTES]) {
  MDB_val kv = val(k, KEY_BYTES), v;
  unsigned char ik[IDX_BYTES];
  struct rec r;
  int rc = mdb_get(w->txn, s->entries, &kv, &v);
  if (rc != 0)
    return rc;
  uint64_t size = v.mv_size + KEY_BYTES;
  if (rec_parse(&v, &r) && r.expires_ms != 0) {
    idx_key(ik, r.expires_ms, k);
    if ((rc = del_quiet(w->txn, s->exp, ik, IDX_BYTES)) != 0)
      return rc;
  }
  rc = mdb_get(w->txn, s->atimes, &kv, &v);
  if (rc == 0 && v.mv_size == 8) {
    idx_key(ik, get_u64be(v.mv_data), k);
    if ((rc = del_quiet(w->txn, s->lru, ik, IDX_BYTES)) != 0)
      return rc;
  } else if (rc != 0 && rc != MDB_NOTFOUND) {
    return rc;
  }
  if ((rc = del_quiet(w->txn, s->atimes, k, KEY_BYTES)) != 0)
    return rc;
  if ((rc = mdb_del(w->txn, s->entries, &kv, NULL)) != 0)
    return rc;
  w->entries = w->entries ? w->entries - 1 : 0;
  w->bytes = w->bytes > size ? w->bytes - size : 0;
  w->gc.bytes_freed += size;
  return 0;
}

/* Whether an index row still describes its entry: the entry's expiry
 * (exp) or recorded access time (lru) is the row's time. An unreadable
 * record counts as described: it is better gone. */
static int row_current(ratchet_store *s, struct wtx *w, MDB_dbi idx,
                       const unsigned char row[IDX_BYTES], bool *current) {
  MDB_val kv = val(row + 8, KEY_BYTES), v;
  struct rec r;
  int rc = mdb_get(w->txn, idx == s->exp ? s->entries : s->atimes, &kv, &v);
  if (rc != 0)
    return rc;
  if (idx == s->exp)
    *current = !rec_parse(&v, &r) || r.expires_ms == get_u64be(row);
  else
    *current = v.mv_size != 8 || get_u64be(v.mv_data) == get_u64be(row);
  return 0;
}

/* Removes the entry an index row names, or the row alone if it is stale
 * (its entry gone or changed since), so that a stray row can never take a
 * fresh entry with it. *dropped tells which. */
static int drop_row(ratchet_store *s, struct wtx *w, MDB_dbi idx,
                    const unsigned char row[IDX_BYTES], bool *dropped) {
  bool current = false;
  int rc = row_current(s, w, idx, row, &current);
  *dropped = false;
  if (rc == 0 && current) {
    rc = del_entry(s, w, row + 8);
    *dropped = rc == 0;
  }
  if (rc == MDB_NOTFOUND || (rc == 0 && !current))
    rc = del_quiet(w->txn, idx, row, IDX_BYTES);
  return rc;
}

/* Looks at the first row of an index: MDB_NOTFOUND if empty. */
static int peek_first(ratchet_store *s, struct wtx *w, MDB_dbi idx,
                      unsigned char row[IDX_BYTES]) {
  MDB_cursor *c;
  MDB_val k, v;
  (void)s;
  int rc = mdb_cursor_open(w->txn, idx, &c);
  if (rc != 0)
    return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  if (rc == 0 && k.mv_size != IDX_BYTES)
    rc = MDB_CORRUPTED;
  if (rc == 0)
    memcpy(row, k.mv_data, IDX_BYTES);
  mdb_cursor_close(c);
  return rc;
}

/*
 * Collects inside w: expired entries, entries idle beyond max_age (each up
 * to `budget`, 0: no limit), then the least recently used until the
 * logical size is at most `target`.
 */
static int collect(ratchet_store *s, struct wtx *w, uint64_t now_ms,
                   uint64_t budget, uint64_t target) {
  unsigned char row[IDX_BYTES];
  bool dropped;
  int rc;
  for (uint64_t n = 0; budget == 0 || n < budget; n++) {
    rc = peek_first(s, w, s->exp, row);
    if (rc == MDB_NOTFOUND || (rc == 0 && get_u64be(row) > now_ms))
      break;
    if (rc != 0 || (rc = drop_row(s, w, s->exp, row, &dropped)) != 0)
      return rc;
    w->gc.expired += dropped;
  }
  if (s->max_age_ms != 0 && now_ms > s->max_age_ms) {
    uint64_t oldest_ok = now_ms - s->max_age_ms;
    for (uint64_t n = 0; budget == 0 || n < budget; n++) {
      rc = peek_first(s, w, s->lru, row);
      if (rc == MDB_NOTFOUND || (rc == 0 && get_u64be(row) >= oldest_ok))
        break;
      if (rc != 0 || (rc = drop_row(s, w, s->lru, row, &dropped)) != 0)
        return rc;
      w->gc.idle += dropped;
    }
  }
  while (w->bytes > target) {
    rc = peek_first(s, w, s->lru, row);
    if (rc == MDB_NOTFOUND) {
      w->bytes = 0; /* nothing left to account for */
      break;
    }
    if (rc != 0 || (rc = drop_row(s, w, s->lru, row, &dropped)) != 0)
      return rc;
    w->gc.evicted += dropped;
  }
  return 0;
}

static void count_gc(ratchet_store *s, const ratchet_store_gc_result *g) {
  atomic_fetch_add(&s->expirations, g->expired);
  atomic_fetch_add(&s->evictions, g->idle + g->evicted);
}

/* ---- options and directories ---- */

int ratchet_store_default_dir(char *buf, size_t len) {
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  int n;
  if (buf == NULL)
    return -EINVAL;
  if (xdg != NULL && xdg[0] == '/')
    n = snprintf(buf, len, "%s/ratchet/store", xdg);
  else if (home != NULL && home[0] != '\0')
    n = snprintf(buf, len, "%s/.cache/ratchet/store", home);
  else
    return fail(-ENOENT, "no cache directory: neither XDG_CACHE_HOME (an "
                         "absolute path) nor HOME is set");
  if (n < 0 || (size_t)n >= len)
    return fail(-ENAMETOOLONG, "cache directory path is too long");
  return 0;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(const char *dir) {
  size_t n = strlen(dir);
  char *p = ratchet_malloc(n + 1);
  int rc = 0;
  if (p == NULL)
    return -ENOMEM;
  memcpy(p, dir, n + 1);
  for (size_t i = 1; i <= n && rc == 0; i++) {
    if (p[i] != '/' && p[i] != '\0')
      continue;
    char saved = p[i];
    p[i] = '\0';
    if (mkdir(p, 0700) == 0) {
      if (chmod(p, 0700) != 0) /* the umask may have removed bits */
        rc = -errno;
    } else if (errno != EEXIST) {
      rc = -errno;
    }
    p[i] = saved;
  }
  ratchet_free(p);
  return rc;
}

static char *path_join(const char *dir, const char *file) {
  size_t a = strlen(dir), b = strlen(file);
  char *p = ratchet_malloc(a + b + 2);
  if (p == NULL)
    return NULL;
  memcpy(p, dir, a);
  p[a] = '/';
  memcpy(p + a + 1, file, b + 1);
  return p;
}

/* ---- the registry of open stores ---- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static ratchet_store *reg_head;

static bool reg_has(dev_t dev, ino_t ino) {
  for (ratchet_store *s = reg_head; s != NULL; s = s->reg_next)
    if (s->dev == dev && s->ino == ino)
      return true;
  return false;
}

/* Removes the store's files; the caller holds reg_lock. */
static int destroy_locked(const char *dir) {
  static const char *const files[] = {"data.mdb", "lock.mdb"};
  int rc = 0;
  for (size_t i = 0; i < 2 && rc == 0; i++) {
    char *p = path_join(dir, files[i]);
    if (p == NULL)
      rc = fail(-ENOMEM, "cache store %s: out of memory", dir);
    else if (unlink(p) != 0 && errno != ENOENT)
      rc = fail(-errno, "cannot remove %s: %s", p, strerror(errno));
    ratchet_free(p);
  }
  if (rc == 0 && rmdir(dir) != 0 && errno != ENOENT && errno != ENOTEMPTY &&
      errno != EEXIST)
    rc = fail(-errno, "cannot remove %s: %s", dir, strerror(errno));
  return rc;
}

int ratchet_store_destroy(const char *dir) {
  struct stat sb;
  if (dir == NULL || dir[0] == '\0')
    return fail(-EINVAL, "ratchet_store_destroy: no directory");
  pthread_mutex_lock(&reg_lock);
  int rc;
  if (stat(dir, &sb) == 0 && reg_has(sb.st_dev, sb.st_ino))
    rc = fail(-EBUSY,
              "cache store %s is open in this process: close it "
              "first",
              dir);
  else
    rc = destroy_locked(dir);
  pthread_mutex_unlock(&reg_lock);
  return rc;
}

/* ---- open ---- */

static int check_options(const ratchet_store_options *o) {
  if (o->max_bytes < 4096)
    return -EINVAL;
  if (o->map_size != 0 && o->map_size < MIN_MAP)
    return -EINVAL;
  if (o->durability != RATCHET_STORE_SYNC &&
      o->durability != RATCHET_STORE_NOMETASYNC &&
      o->durability != RATCHET_STORE_NOSYNC)
    return -EINVAL;
  if (o->max_readers < 1 || o->max_readers > 32767)
    return -EINVAL;
  return 0;
}

static int open_dbi(ratchet_store *s, MDB_txn *txn, const char *name,
                    unsigned flags, MDB_dbi *dbi) {
  int rc = mdb_dbi_open(txn, name, flags, dbi);
  if (rc == MDB_NOTFOUND)
    return fail(RATCHET_ECACHE_CORRUPT,
                "cache store %s is damaged: its '%s' table is missing; %s",
                s->dir, name, REBUILD_HINT);
  if (rc != 0)
    return fail_mdb(s, rc, "opening its tables");
  return 0;
}

/* Checks the format record, creating the tables of a fresh store. Runs in
 * one write transaction that is aborted unless the store is ours. */
static int check_format(ratchet_store *s) {
  MDB_txn *txn;
  MDB_dbi main_dbi;
  MDB_val k, v;
  MDB_stat st;
  bool fresh = false;
  int rc = txn_begin(s, 0, &txn);
  if (rc != 0)
    return fail_mdb(s, rc, "starting the first transaction");
  rc = mdb_dbi_open(txn, "meta", 0, &s->meta);
  if (rc == MDB_NOTFOUND) {
    rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    if (rc == 0)
      rc = mdb_stat(txn, main_dbi, &st);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return fail_mdb(s, rc, "reading its tables");
    }
    if (st.ms_entries != 0) {
      mdb_txn_abort(txn);
      return fail(RATCHET_ECACHE_CORRUPT,
                  "%s holds an LMDB environment that is not a ratchet cache "
                  "store (no format record); %s",
                  s->dir, REBUILD_HINT);
    }
    fresh = true;
  } else if (rc != 0) {
    mdb_txn_abort(txn);
    return rc == MDB_INCOMPATIBLE
               ? fail(RATCHET_ECACHE_CORRUPT,
                      "%s is not a ratchet cache store; %s", s->dir,
                      REBUILD_HINT)
               : fail_mdb(s, rc, "reading its format record");
  }
  if (!fresh) {
    k = val("format", 6);
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc != 0 || v.mv_size != 4) {
      mdb_txn_abort(txn);
      if (rc != 0 && rc != MDB_NOTFOUND)
        return fail_mdb(s, rc, "reading its format record");
      return fail(RATCHET_ECACHE_CORRUPT,
                  "cache store %s is damaged: its format record is missing "
                  "or malformed; %s",
                  s->dir, REBUILD_HINT);
    }
    uint32_t format = get_u32le(v.mv_data);
    if (format > RATCHET_STORE_FORMAT) {
      char writer[64] = "a newer ratchet";
      k = val("writer", 6);
      if (mdb_get(txn, s->meta, &k, &v) == 0 && v.mv_size > 0 &&
          v.mv_size < sizeof writer) {
        memcpy(writer, v.mv_data, v.mv_size);
        writer[v.mv_size] = '\0';
        for (size_t i = 0; i < v.mv_size; i++)
          if (writer[i] < 0x20 || writer[i] > 0x7e)
            writer[i] = '?';
      }
      mdb_txn_abort(txn);
      return fail(RATCHET_ECACHE_VERSION,
                  "cache store %s has format %u (written by %s); this "
                  "ratchet (%s) reads format %d. Use the newer ratchet, "
                  "or start over (the store is left untouched until you do): "
                  "%s",
                  s->dir, (unsigned)format, writer, RATCHET_VERSION_STRING,
                  RATCHET_STORE_FORMAT, REBUILD_HINT);
    }
    if (format == 0) {
      mdb_txn_abort(txn);
      return fail(RATCHET_ECACHE_CORRUPT,
                  "cache store %s is damaged: format 0 is not valid; %s",
                  s->dir, REBUILD_HINT);
    }
  }
  unsigned cf = fresh ? MDB_CREATE : 0;
  if ((rc = fresh ? open_dbi(s, txn, "meta", cf, &s->meta) : 0) != 0 ||
      (rc = open_dbi(s, txn, "entries", cf, &s->entries)) != 0 ||
      (rc = open_dbi(s, txn, "atimes", cf, &s->atimes)) != 0 ||
      (rc = open_dbi(s, txn, "lru", cf, &s->lru)) != 0 ||
      (rc = open_dbi(s, txn, "exp", cf, &s->exp)) != 0 ||
      (rc = open_dbi(s, txn, "names", cf, &s->names)) != 0) {
    mdb_txn_abort(txn);
    return rc;
  }
  if (fresh) {
    unsigned char fmt[4], stats[16] = {0};
    put_u32le(fmt, RATCHET_STORE_FORMAT);
    MDB_val fk = val("format", 6), fv = val(fmt, 4);
    MDB_val wk = val("writer", 6);
    MDB_val wv = val("ratchet " RATCHET_VERSION_STRING,
                     strlen("ratchet " RATCHET_VERSION_STRING));
    MDB_val sk = val("stats", 5), sv = val(stats, 16);
    if ((rc = mdb_put(txn, s->meta, &fk, &fv, 0)) != 0 ||
        (rc = mdb_put(txn, s->meta, &wk, &wv, 0)) != 0 ||
        (rc = mdb_put(txn, s->meta, &sk, &sv, 0)) != 0) {
      mdb_txn_abort(txn);
      return fail_mdb(s, rc, "creating the store");
    }
  } else {
    /* The tables must agree with each other and with the statistics. */
    MDB_stat e, a, l;
    k = val("stats", 5);
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0)
      rc = mdb_stat(txn, s->entries, &e);
    if (rc == 0)
      rc = mdb_stat(txn, s->atimes, &a);
    if (rc == 0)
      rc = mdb_stat(txn, s->lru, &l);
    if (rc != 0 && rc != MDB_NOTFOUND) {
      mdb_txn_abort(txn);
      return fail_mdb(s, rc, "reading its statistics");
    }
    if (rc == MDB_NOTFOUND || v.mv_size != 16 ||
        get_u64le(v.mv_data) != e.ms_entries || e.ms_entries != a.ms_entries ||
        e.ms_entries != l.ms_entries) {
      mdb_txn_abort(txn);
      return fail(RATCHET_ECACHE_CORRUPT,
                  "cache store %s is damaged: its tables disagree; %s", s->dir,
                  REBUILD_HINT);
    }
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0)
    return fail_mdb(s, rc, fresh ? "creating the store" : "opening it");
  return 0;
}

/* Refuses a data file shorter than its last page: LMDB maps the file and
 * would die of SIGBUS reading past its end. */
static int check_length(ratchet_store *s) {
  MDB_envinfo info;
  MDB_stat st;
  int fd;
  struct stat sb;
  if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0 ||
      mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &sb) != 0)
    return fail(-EIO, "cache store %s: cannot inspect data.mdb", s->dir);
  uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  if ((uint64_t)sb.st_size < need)
    return fail(RATCHET_ECACHE_CORRUPT,
                "cache store %s is damaged: data.mdb has %llu bytes but its "
                "pages reach %llu (truncated); %s",
                s->dir, (unsigned long long)sb.st_size,
                (unsigned long long)need, REBUILD_HINT);
  return 0;
}

static int env_create(ratchet_store *s, uint64_t map, unsigned readers) {
  int rc = mdb_env_create(&s->env);
  if (rc != 0) {
    s->env = NULL;
    return fail(map_mdb(rc), "cache store %s: cannot create an LMDB handle",
                s->dir);
  }
  mdb_env_set_maxdbs(s->env, 8);
  mdb_env_set_mapsize(s->env, (size_t)map);
  mdb_env_set_maxreaders(s->env, readers);
  return 0;
}

/* Opens the environment in s->dir: everything but the registry. */
static int open_env(ratchet_store *s, const ratchet_store_options *o) {
  struct stat sb;
  char *data = path_join(s->dir, "data.mdb");
  char *lock = path_join(s->dir, "lock.mdb");
  int rc;
  if (data == NULL || lock == NULL) {
    rc = -ENOMEM;
    goto out;
  }
  bool existed = stat(data, &sb) == 0;
  uint64_t map = o->map_size ? o->map_size
                             : (o->max_bytes > (UINT64_MAX - (64u << 20)) / 2
                                    ? UINT64_MAX / 2
                                    : 2 * o->max_bytes + (UINT64_C(64) << 20));
  if (map > SIZE_MAX / 2)
    map = SIZE_MAX / 2;
  unsigned flags = MDB_NOTLS;
  if (o->durability == RATCHET_STORE_NOMETASYNC)
    flags |= MDB_NOMETASYNC;
  if (o->durability == RATCHET_STORE_NOSYNC)
    flags |= MDB_NOSYNC;
  if ((rc = env_create(s, map, o->max_readers)) != 0)
    goto out;
  rc = mdb_env_open(s->env, s->dir, flags, 0600);
  if (rc == MDB_INVALID && stat(data, &sb) == 0 &&
      sb.st_size < 2 * sysconf(_SC_PAGESIZE)) {
    /* Shorter than LMDB's two meta pages: a creation killed half-way,
     * which cannot hold any committed data. Start it again. */
    mdb_env_close(s->env);
    s->env = NULL;
    if (unlink(data) != 0) {
      rc = fail(-errno,
                "cache store %s: cannot remove a half-created "
                "data.mdb: %s",
                s->dir, strerror(errno));
      goto out;
    }
    existed = false;
    if ((rc = env_create(s, map, o->max_readers)) != 0)
      goto out;
    rc = mdb_env_open(s->env, s->dir, flags, 0600);
  }
  if (rc != 0) {
    mdb_env_close(s->env);
    s->env = NULL;
    if (rc == MDB_INVALID)
      rc = fail(RATCHET_ECACHE_CORRUPT,
                "cache store %s is damaged: data.mdb is not an LMDB file "
                "(bad header); %s",
                s->dir, REBUILD_HINT);
    else if (rc == MDB_VERSION_MISMATCH)
      rc = fail(RATCHET_ECACHE_VERSION,
                "cache store %s was written by an incompatible LMDB version "
                "(this one is %s); %s",
                s->dir, MDB_VERSION_STRING, REBUILD_HINT);
    else if (rc == EACCES || rc == EPERM || rc == EROFS)
      rc = fail(map_mdb(rc),
                "cache store %s: %s (the directory and its files must be "
                "readable and writable by this user)",
                s->dir, mdb_strerror(rc));
    else
      rc = fail_mdb(s, rc, "opening the LMDB environment");
    goto out;
  }
  if (!existed) {
    /* Created just now with 0600 minus the umask: make it exactly 0600. */
    chmod(data, 0600);
    chmod(lock, 0600);
  }
  if ((rc = check_length(s)) != 0)
    goto fail_env;
  int dead = 0;
  mdb_reader_check(s->env, &dead); /* slots of killed readers */
  if ((rc = check_format(s)) != 0)
    goto fail_env;
  goto out;
fail_env:
  mdb_env_close(s->env);
  s->env = NULL;
out:
  ratchet_free(data);
  ratchet_free(lock);
  return rc;
}

int ratchet_store_open(const ratchet_store_options *o, ratchet_store **out) {
  char defdir[PATH_MAX];
  struct stat sb;
  ratchet_store *s = NULL;
  int rc;
  if (o == NULL || out == NULL)
    return fail(-EINVAL, "ratchet_store_open: NULL argument");
  if ((rc = check_options(o)) != 0)
    return fail(rc, "ratchet_store_open: an option is out of range");
  const char *dir = o->dir;
  if (dir == NULL) {
    if ((rc = ratchet_store_default_dir(defdir, sizeof defdir)) != 0)
      return rc;
    dir = defdir;
  }
  if (dir[0] == '\0')
    return fail(-EINVAL, "ratchet_store_open: empty directory name");
  s = ratchet_calloc(1, sizeof *s);
  if (s == NULL || (s->dir = ratchet_malloc(strlen(dir) + 1)) == NULL) {
    ratchet_free(s);
    return fail(-ENOMEM, "cache store %s: out of memory", dir);
  }
  strcpy(s->dir, dir);
  s->max_bytes = o->max_bytes;
  s->max_age_ms = o->max_age_ms;
  s->default_ttl_ms = o->default_ttl_ms;
  s->touch_interval_ms = o->touch_interval_ms;
  if ((rc = make_dirs(dir)) != 0) {
    rc = fail(rc, "cache store %s: cannot create the directory: %s", dir,
              strerror(-rc));
    goto fail_free;
  }
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    rc = fail(-ENOTDIR, "cache store %s: not a directory", dir);
    goto fail_free;
  }
  s->dev = sb.st_dev;
  s->ino = sb.st_ino;
  pthread_mutex_lock(&reg_lock);
  if (reg_has(s->dev, s->ino)) {
    pthread_mutex_unlock(&reg_lock);
    rc = fail(-EBUSY,
              "cache store %s is already open in this process (LMDB allows "
              "one handle per process: share it)",
              dir);
    goto fail_free;
  }
  rc = open_env(s, o);
  if (rc == RATCHET_ECACHE_CORRUPT && o->rebuild_if_corrupt) {
    char why[ERRBUF];
    snprintf(why, sizeof why, "%s", last_err);
    int drc = destroy_locked(dir);
    if (drc == 0 && make_dirs(dir) == 0 && (rc = open_env(s, o)) == 0) {
      fail(0, "rebuilt an empty cache store: %s", why);
      if (stat(dir, &sb) == 0) { /* the directory may be a new one */
        s->dev = sb.st_dev;
        s->ino = sb.st_ino;
      }
    }
  }
  if (rc == 0) {
    s->reg_next = reg_head;
    reg_head = s;
  }
  pthread_mutex_unlock(&reg_lock);
  if (rc != 0)
    goto fail_free;
  *out = s;
  return 0;
fail_free:
  ratchet_free(s->dir);
  ratchet_free(s);
  return rc;
}

void ratchet_store_close(ratchet_store *s) {
  if (s == NULL)
    return;
  pthread_mutex_lock(&reg_lock);
  for (ratchet_store **p = &reg_head; *p != NULL; p = &(*p)->reg_next)
    if (*p == s) {
      *p = s->reg_next;
      break;
    }
  mdb_env_close(s->env);
  pthread_mutex_unlock(&reg_lock);
  ratchet_free(s->dir);
  ratchet_free(s);
}

const char *ratchet_store_dir(const ratchet_store *s) {
  return s->dir;
}

uint64_t ratchet_store_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- put ---- */

uint64_t ratchet_store_expiry(const ratchet_store *s, uint64_t ttl_ms,
                              uint64_t now_ms) {
  uint64_t ttl = ttl_ms ? ttl_ms : s->default_ttl_ms;
  if (ttl == 0 || ttl == RATCHET_STORE_TTL_NEVER)
    return 0;
  return now_ms > UINT64_MAX - ttl ? UINT64_MAX : now_ms + ttl;
}

static int check_item(const ratchet_store *s, const ratchet_store_item *it,
                      uint64_t *acc) {
  const ratchet_store_put_options *po = &it->opts;
  if ((it->value == NULL && it->len != 0) ||
      (po->manifest == NULL && po->manifest_len != 0))
    return fail(-EINVAL, "ratchet_store_put: NULL data with a length");
  if (po->manifest_len > UINT32_MAX)
    return fail(-EINVAL, "ratchet_store_put: manifest too large");
  if (po->name != NULL) {
    size_t nl = strnlen(po->name, NAME_MAX_BYTES + 1);
    if (nl == 0 || nl > NAME_MAX_BYTES)
      return fail(-EINVAL,
                  "ratchet_store_put: a task name must have 1 to "
                  "%u bytes",
                  NAME_MAX_BYTES);
  }
  uint64_t rec = (uint64_t)REC_HEADER + po->manifest_len;
  if (it->len > UINT32_MAX - rec || rec + it->len + KEY_BYTES > s->max_bytes)
    return fail(RATCHET_ECACHE_TOO_BIG,
                "cache store %s: a value of %zu bytes does not fit under "
                "max_bytes (%llu)",
                s->dir, it->len, (unsigned long long)s->max_bytes);
  *acc = rec + it->len + KEY_BYTES;
  return 0;
}

static int put_one(ratchet_store *s, struct wtx *w,
                   const ratchet_store_item *it, uint64_t now_ms,
                   uint64_t atime) {
  const ratchet_store_put_options *po = &it->opts;
  unsigned char k[KEY_BYTES], ik[IDX_BYTES], tb[8];
  ratchet_cache_key_bytes(&it->key, k);
  uint64_t expires = ratchet_store_expiry(s, po->ttl_ms, now_ms);
  int rc = del_entry(s, w, k);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return rc;
  size_t mlen = po->manifest_len;
  size_t size = REC_HEADER + mlen + it->len;
  MDB_val kv = val(k, KEY_BYTES), v;
  v.mv_size = size;
  v.mv_data = NULL;
  if ((rc = mdb_put(w->txn, s->entries, &kv, &v, MDB_RESERVE)) != 0)
    return rc;
  unsigned char *p = v.mv_data;
  memcpy(p, REC_MAGIC, 4);
  put_u32le(p + 4, (uint32_t)mlen);
  put_u64le(p + 8, it->len);
  put_u64le(p + 16, now_ms);
  put_u64le(p + 24, expires);
  if (mlen)
    memcpy(p + REC_HEADER, po->manifest, mlen);
  if (it->len)
    memcpy(p + REC_HEADER + mlen, it->value, it->len);
  XXH128_hash_t h = rec_sum(k, p, po->manifest, mlen, it->value, it->len);
  put_u64le(p + 32, h.high64);
  put_u64le(p + 40, h.low64);

  put_u64be(tb, atime);
  MDB_val tv = val(tb, 8), empty = val("", 0);
  if ((rc = mdb_put(w->txn, s->atimes, &kv, &tv, 0)) != 0)
    return rc;
  idx_key(ik, atime, k);
  MDB_val iv = val(ik, IDX_BYTES);
  if ((rc = mdb_put(w->txn, s->lru, &iv, &empty, 0)) != 0)
    return rc;
  if (expires != 0) {
    idx_key(ik, expires, k);
    if ((rc = mdb_put(w->txn, s->exp, &iv, &empty, 0)) != 0)
      return rc;
  }
  if (po->name != NULL) {
    MDB_val nk = val(po->name, strlen(po->name)), nv;
    nv.mv_size = KEY_BYTES + mlen;
    nv.mv_data = NULL;
    if ((rc = mdb_put(w->txn, s->names, &nk, &nv, MDB_RESERVE)) != 0)
      return rc;
    memcpy(nv.mv_data, k, KEY_BYTES);
    if (mlen)
      memcpy((unsigned char *)nv.mv_data + KEY_BYTES, po->manifest, mlen);
  }
  w->entries++;
  w->bytes += size + KEY_BYTES;
  return 0;
}

/* One attempt: all items in one transaction. Returns an LMDB code. */
static int put_txn(ratchet_store *s, const ratchet_store_item *items, size_t n,
                   uint64_t now_ms, ratchet_store_gc_result *gc) {
  struct wtx w;
  uint64_t newest;
  int rc = wtx_begin(s, &w);
  if (rc != 0)
    return rc;
  if ((rc = lru_newest(s, w.txn, &newest)) != 0)
    goto abort;
  uint64_t atime = now_ms > newest ? now_ms : newest;
  for (size_t i = 0; i < n; i++)
    if ((rc = put_one(s, &w, &items[i], now_ms, atime)) != 0)
      goto abort;
  if ((rc = collect(s, &w, now_ms, STEP_BUDGET, s->max_bytes)) != 0)
    goto abort;
  *gc = w.gc;
  return wtx_commit(s, &w);
abort:
  mdb_txn_abort(w.txn);
  return rc;
}

/*
 * Frees space after MDB_MAP_FULL or ENOSPC: drops least recently used
 * entries, in transactions small enough to commit in a full map, until
 * `goal` bytes are freed or nothing is left.
 */
static int make_room(ratchet_store *s, uint64_t goal) {
  uint64_t freed = 0, chunk = 64;
  int dead;
  mdb_reader_check(s->env, &dead);
  while (freed < goal) {
    struct wtx w;
    unsigned char row[IDX_BYTES];
    int rc = wtx_begin(s, &w);
    if (rc != 0)
      return rc;
    uint64_t n = 0;
    bool dropped;
    while (n < chunk && (rc = peek_first(s, &w, s->lru, row)) == 0) {
      if ((rc = drop_row(s, &w, s->lru, row, &dropped)) != 0)
        break;
      n++;
    }
    if (rc == MDB_NOTFOUND)
      rc = 0;
    if (rc == 0)
      rc = wtx_commit(s, &w);
    else
      mdb_txn_abort(w.txn);
    if (is_full(rc) && chunk > 1) {
      chunk /= 2; /* even deleting needs pages: try fewer at a time */
      continue;
    }
    if (rc != 0)
      return rc;
    freed += w.gc.bytes_freed;
    atomic_fetch_add(&s->evictions, n);
    if (n < chunk)
      break; /* the store is empty */
  }
  /* LMDB reuses the pages a transaction freed only once a later one has
   * committed (the previous snapshot still refers to them): commit one
   * more (its statistics record makes it a real write). */
  struct wtx w;
  int rc = wtx_begin(s, &w);
  return rc != 0 ? rc : wtx_commit(s, &w);
}

int ratchet_store_put_batch(ratchet_store *s, const ratchet_store_item *items,
                            size_t n, uint64_t now_ms) {
  ratchet_store_gc_result gc = {0, 0, 0, 0};
  uint64_t total = 0, acc = 0;
  if (s == NULL || (items == NULL && n != 0))
    return fail(-EINVAL, "ratchet_store_put: NULL argument");
  for (size_t i = 0; i < n; i++) {
    int rc = check_item(s, &items[i], &acc);
    if (rc != 0)
      return rc;
    total += acc;
  }
  if (n == 0)
    return 0;
  int rc = put_txn(s, items, n, now_ms, &gc);
  if (is_full(rc)) {
    ratchet_store_stats st;
    ratchet_store_stats_get(s, &st);
    uint64_t goal = st.bytes / 2 > 2 * total ? st.bytes / 2 : 2 * total;
    int rr = make_room(s, goal);
    if (rr != 0 && !is_full(rr))
      return fail_mdb(s, rr, "making room");
    rc = put_txn(s, items, n, now_ms, &gc);
  }
  if (rc != 0)
    return fail_mdb(s, rc, "storing a value");
  count_gc(s, &gc);
  atomic_fetch_add(&s->puts, n);
  return 0;
}

int ratchet_store_put(ratchet_store *s, const ratchet_cache_key *key,
                      const void *value, size_t len,
                      const ratchet_store_put_options *po, uint64_t now_ms) {
  ratchet_store_item it;
  if (key == NULL)
    return fail(-EINVAL, "ratchet_store_put: NULL key");
  it.key = *key;
  it.value = value;
  it.len = len;
  if (po != NULL) {
    it.opts = *po;
  } else {
    ratchet_store_put_options none = RATCHET_STORE_PUT_OPTIONS_INIT;
    it.opts = none;
  }
  return ratchet_store_put_batch(s, &it, 1, now_ms);
}

/* ---- get ---- */

/* Deletes key if its record still starts with `header` (the one a reader
 * judged expired or corrupt), so that a fresh put by someone else
 * survives. Best effort: failures are ignored. */
static void delete_if_same(ratchet_store *s, const unsigned char k[KEY_BYTES],
                           const unsigned char header[REC_HEADER],
                           size_t hlen) {
  struct wtx w;
  MDB_val kv = val(k, KEY_BYTES), v;
  if (wtx_begin(s, &w) != 0)
    return;
  int rc = mdb_get(w.txn, s->entries, &kv, &v);
  if (rc == 0 && v.mv_size >= hlen && memcmp(v.mv_data, header, hlen) == 0)
    rc = del_entry(s, &w, k);
  else
    rc = MDB_NOTFOUND;
  if (rc == 0)
    wtx_commit(s, &w);
  else
    mdb_txn_abort(w.txn);
}

/* Moves key's access time to now if it is older than touch_interval_ms. */
static void touch(ratchet_store *s, const unsigned char k[KEY_BYTES],
                  uint64_t now_ms) {
  struct wtx w;
  MDB_val kv = val(k, KEY_BYTES), v;
  unsigned char ik[IDX_BYTES], tb[8];
  uint64_t newest;
  if (wtx_begin(s, &w) != 0)
    return;
  int rc = mdb_get(w.txn, s->atimes, &kv, &v);
  if (rc != 0 || v.mv_size != 8)
    goto abort;
  uint64_t old = get_u64be(v.mv_data);
  if (now_ms < old || now_ms - old < s->touch_interval_ms)
    goto abort; /* someone else touched it */
  if (lru_newest(s, w.txn, &newest) != 0)
    goto abort;
  uint64_t t = now_ms > newest ? now_ms : newest;
  idx_key(ik, old, k);
  if (del_quiet(w.txn, s->lru, ik, IDX_BYTES) != 0)
    goto abort;
  idx_key(ik, t, k);
  put_u64be(tb, t);
  MDB_val iv = val(ik, IDX_BYTES), tv = val(tb, 8), empty = val("", 0);
  if (mdb_put(w.txn, s->lru, &iv, &empty, 0) != 0 ||
      mdb_put(w.txn, s->atimes, &kv, &tv, 0) != 0)
    goto abort;
  wtx_commit(s, &w);
  return;
abort:
  mdb_txn_abort(w.txn);
}

enum { WANT_VALUE, WANT_MANIFEST };

static int lookup(ratchet_store *s, const ratchet_cache_key *key,
                  uint64_t now_ms, int want, void **out, size_t *len,
                  ratchet_store_meta *meta) {
  unsigned char k[KEY_BYTES], header[REC_HEADER];
  size_t hlen = 0;
  MDB_txn *txn;
  MDB_val kv = val(k, KEY_BYTES), v;
  struct rec r;
  bool expired = false, bad = false, do_touch = false;
  void *copy = NULL;
  size_t n = 0;
  if (s == NULL || key == NULL || out == NULL || len == NULL)
    return fail(-EINVAL, "ratchet_store_get: NULL argument");
  ratchet_cache_key_bytes(key, k);
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return fail_mdb(s, rc, "starting a read");
  rc = mdb_get(txn, s->entries, &kv, &v);
  if (rc == MDB_NOTFOUND) {
    mdb_txn_abort(txn);
    atomic_fetch_add(&s->misses, 1);
    return RATCHET_ECACHE_MISS;
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    return fail_mdb(s, rc, "reading an entry");
  }
  hlen = v.mv_size < REC_HEADER ? v.mv_size : REC_HEADER;
  memcpy(header, v.mv_data, hlen);
  if (!rec_parse(&v, &r) || !rec_verify(k, &r)) {
    bad = true;
  } else if (r.expires_ms != 0 && now_ms >= r.expires_ms) {
    expired = true;
  } else {
    n = want == WANT_VALUE ? (size_t)r.value_len : r.manifest_len;
    copy = ratchet_malloc(n ? n : 1);
    if (copy == NULL) {
      mdb_txn_abort(txn);
      return fail(-ENOMEM, "cache store %s: out of memory", s->dir);
    }
    if (n)
      memcpy(copy, want == WANT_VALUE ? r.value : r.manifest, n);
    if (meta != NULL) {
      meta->created_ms = r.created_ms;
      meta->expires_ms = r.expires_ms;
      meta->value_len = r.value_len;
      meta->manifest_len = r.manifest_len;
    }
    if (s->touch_interval_ms != 0 && mdb_get(txn, s->atimes, &kv, &v) == 0 &&
        v.mv_size == 8) {
      uint64_t at = get_u64be(v.mv_data);
      do_touch = now_ms >= at && now_ms - at >= s->touch_interval_ms;
    }
  }
  mdb_txn_abort(txn);
  if (bad || expired) {
    delete_if_same(s, k, header, hlen);
    if (expired) {
      atomic_fetch_add(&s->expirations, 1);
      atomic_fetch_add(&s->misses, 1);
      return RATCHET_ECACHE_MISS;
    }
    char hex[RATCHET_CACHE_KEY_HEX_SIZE];
    atomic_fetch_add(&s->corrupt, 1);
    return fail(RATCHET_ECACHE_CORRUPT,
                "cache store %s: the entry %s failed its checksum and was "
                "deleted (a disk or memory error, or an outside write); if "
                "this recurs, %s",
                s->dir, ratchet_cache_key_hex(key, hex), REBUILD_HINT);
  }
  if (do_touch)
    touch(s, k, now_ms);
  atomic_fetch_add(&s->hits, 1);
  *out = copy;
  *len = n;
  return 0;
}

int ratchet_store_get(ratchet_store *s, const ratchet_cache_key *key,
                      uint64_t now_ms, void **value, size_t *len,
                      ratchet_store_meta *meta) {
  return lookup(s, key, now_ms, WANT_VALUE, value, len, meta);
}

int ratchet_store_get_manifest(ratchet_store *s, const ratchet_cache_key *key,
                               uint64_t now_ms, void **manifest, size_t *len) {
  return lookup(s, key, now_ms, WANT_MANIFEST, manifest, len, NULL);
}

int ratchet_store_last_manifest(ratchet_store *s, const char *name,
                                ratchet_cache_key *key, void **manifest,
                                size_t *len) {
  MDB_txn *txn;
  MDB_val v;
  if (s == NULL || name == NULL || key == NULL || manifest == NULL ||
      len == NULL)
    return fail(-EINVAL, "ratchet_store_last_manifest: NULL argument");
  size_t nl = strnlen(name, NAME_MAX_BYTES + 1);
  if (nl == 0 || nl > NAME_MAX_BYTES)
    return RATCHET_ECACHE_MISS;
  MDB_val nk = val(name, nl);
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return fail_mdb(s, rc, "starting a read");
  rc = mdb_get(txn, s->names, &nk, &v);
  if (rc == 0 && v.mv_size < KEY_BYTES)
    rc = MDB_CORRUPTED;
  if (rc != 0) {
    mdb_txn_abort(txn);
    return rc == MDB_NOTFOUND ? RATCHET_ECACHE_MISS
                              : fail_mdb(s, rc, "reading a task name");
  }
  const unsigned char *p = v.mv_data;
  size_t n = v.mv_size - KEY_BYTES;
  void *copy = ratchet_malloc(n ? n : 1);
  if (copy == NULL) {
    mdb_txn_abort(txn);
    return fail(-ENOMEM, "cache store %s: out of memory", s->dir);
  }
  key->hi = get_u64be(p);
  key->lo = get_u64be(p + 8);
  if (n)
    memcpy(copy, p + KEY_BYTES, n);
  mdb_txn_abort(txn);
  *manifest = copy;
  *len = n;
  return 0;
}

/* ---- maintenance ---- */

int ratchet_store_invalidate(ratchet_store *s, const ratchet_cache_key *key) {
  struct wtx w;
  unsigned char k[KEY_BYTES];
  if (s == NULL || key == NULL)
    return fail(-EINVAL, "ratchet_store_invalidate: NULL argument");
  ratchet_cache_key_bytes(key, k);
  int rc = wtx_begin(s, &w);
  if (rc != 0)
    return fail_mdb(s, rc, "starting a write");
  rc = del_entry(s, &w, k);
  if (rc != 0) {
    mdb_txn_abort(w.txn);
    return rc == MDB_NOTFOUND ? RATCHET_ECACHE_MISS
                              : fail_mdb(s, rc, "deleting an entry");
  }
  rc = wtx_commit(s, &w);
  return rc == 0 ? 0 : fail_mdb(s, rc, "deleting an entry");
}

int ratchet_store_clear(ratchet_store *s) {
  struct wtx w;
  if (s == NULL)
    return fail(-EINVAL, "ratchet_store_clear: NULL store");
  int rc = wtx_begin(s, &w);
  if (rc != 0)
    return fail_mdb(s, rc, "starting a write");
  MDB_dbi dbis[] = {s->entries, s->atimes, s->lru, s->exp, s->names};
  for (size_t i = 0; i < sizeof dbis / sizeof dbis[0] && rc == 0; i++)
    rc = mdb_drop(w.txn, dbis[i], 0);
  if (rc != 0) {
    mdb_txn_abort(w.txn);
    return fail_mdb(s, rc, "clearing");
  }
  w.entries = 0;
  w.bytes = 0;
  rc = wtx_commit(s, &w);
  return rc == 0 ? 0 : fail_mdb(s, rc, "clearing");
}

int ratchet_store_gc(ratchet_store *s, uint64_t now_ms,
                     ratchet_store_gc_result *r) {
  struct wtx w;
  if (s == NULL)
    return fail(-EINVAL, "ratchet_store_gc: NULL store");
  int rc = wtx_begin(s, &w);
  if (rc != 0)
    return fail_mdb(s, rc, "starting a collection");
  rc = collect(s, &w, now_ms, 0, s->max_bytes);
  if (rc != 0) {
    mdb_txn_abort(w.txn);
    return fail_mdb(s, rc, "collecting");
  }
  ratchet_store_gc_result g = w.gc;
  rc = wtx_commit(s, &w);
  if (rc != 0)
    return fail_mdb(s, rc, "collecting");
  count_gc(s, &g);
  if (r != NULL)
    *r = g;
  return 0;
}

int ratchet_store_verify(ratchet_store *s, uint64_t *bad) {
  MDB_txn *txn;
  MDB_cursor *c;
  MDB_val k, v;
  unsigned char *keys = NULL;
  size_t nbad = 0, cap = 0;
  if (s == NULL)
    return fail(-EINVAL, "ratchet_store_verify: NULL store");
  int rc = txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return fail_mdb(s, rc, "starting a read");
  rc = mdb_cursor_open(txn, s->entries, &c);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return fail_mdb(s, rc, "verifying");
  }
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    struct rec r;
    if (k.mv_size == KEY_BYTES && rec_parse(&v, &r) &&
        rec_verify(k.mv_data, &r))
      continue;
    if (k.mv_size != KEY_BYTES)
      continue; /* cannot be named by a get; counted, left alone */
    if (nbad == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      unsigned char *p = ratchet_realloc(keys, ncap * KEY_BYTES);
      if (p == NULL) {
        rc = ENOMEM;
        break;
      }
      keys = p;
      cap = ncap;
    }
    memcpy(keys + nbad++ * KEY_BYTES, k.mv_data, KEY_BYTES);
  }
  mdb_cursor_close(c);
  mdb_txn_abort(txn);
  if (rc != MDB_NOTFOUND) {
    ratchet_free(keys);
    return fail_mdb(s, rc, "verifying");
  }
  rc = 0;
  if (nbad > 0) {
    struct wtx w;
    rc = wtx_begin(s, &w);
    for (size_t i = 0; i < nbad && rc == 0; i++) {
      rc = del_entry(s, &w, keys + i * KEY_BYTES);
      if (rc == MDB_NOTFOUND)
        rc = 0;
    }
    if (rc == 0)
      rc = wtx_commit(s, &w);
    else
      mdb_txn_abort(w.txn);
    atomic_fetch_add(&s->corrupt, nbad);
  }
  ratchet_free(keys);
  if (rc != 0)
    return fail_mdb(s, rc, "deleting damaged entries");
  if (bad != NULL)
    *bad = nbad;
  return 0;
}

int ratchet_store_sync(ratchet_store *s) {
  if (s == NULL)
    return fail(-EINVAL, "ratchet_store_sync: NULL store");
  int rc = mdb_env_sync(s->env, 1);
  return rc == 0 ? 0 : fail_mdb(s, rc, "syncing");
}

void ratchet_store_stats_get(ratchet_store *s, ratchet_store_stats *st) {
  MDB_txn *txn;
  MDB_val k = val("stats", 5), v;
  MDB_stat ns;
  MDB_envinfo info;
  struct stat sb;
  int fd;
  memset(st, 0, sizeof *st);
  st->max_bytes = s->max_bytes;
  if (txn_begin(s, MDB_RDONLY, &txn) == 0) {
    if (mdb_get(txn, s->meta, &k, &v) == 0 && v.mv_size == 16) {
      st->entries = get_u64le(v.mv_data);
      st->bytes = get_u64le((const unsigned char *)v.mv_data + 8);
    }
    if (mdb_stat(txn, s->names, &ns) == 0)
      st->names = ns.ms_entries;
    mdb_txn_abort(txn);
  }
  if (mdb_env_info(s->env, &info) == 0)
    st->map_size = info.me_mapsize;
  if (mdb_env_get_fd(s->env, &fd) == 0 && fstat(fd, &sb) == 0)
    st->file_bytes = (uint64_t)sb.st_size;
  st->hits = atomic_load(&s->hits);
  st->misses = atomic_load(&s->misses);
  st->puts = atomic_load(&s->puts);
  st->expirations = atomic_load(&s->expirations);
  st->evictions = atomic_load(&s->evictions);
  st->corrupt = atomic_load(&s->corrupt);
}
