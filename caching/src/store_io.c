/*
 * store_io.c - reading and writing the persistent tier: put (one value or a
 * batch), get, the manifests, invalidate and clear.
 *
 * A put writes its record straight into the space LMDB reserves for it,
 * with the index rows, the task name's last manifest, the statistics and a
 * bounded collection (store_gc.c), all in one write transaction; a batch is
 * one transaction for all its items. If the map or the disk is full, the
 * put makes room in transactions of its own and retries once.
 *
 * The access time lives outside the record so that a hit that refreshes it
 * rewrites 40 bytes of index, not the value; it is refreshed only when
 * older than touch_interval_ms, so most hits are read-only transactions.
 * The LRU clock never goes backwards (a put's access time is at least the
 * newest one in the index) so that a fresh entry is never the first victim
 * when the wall clock steps back - by up to ATIME_SLACK_MS: no access time
 * is stored further ahead of the writer's clock than that, so that a put
 * made while the clock was far ahead cannot pin every later access time
 * (and with them touch, LRU order and max_age) to the future until the
 * clock catches up. A hit refreshes an access time further ahead.
 *
 * A get copies what it needs out of a read transaction after checking the
 * record's checksum. An entry found expired or damaged is deleted in a
 * write transaction of its own, and only if it is still the record the
 * reader judged, so that a fresh put by someone else survives.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/store.h"
#include "store_private.h"

#define NAME_MAX_BYTES 400u
#define STEP_BUDGET    256u /* expired/idle entries collected per put */
#define ATIME_SLACK_MS (UINT64_C(10) * 60 * 1000)

/* The latest access time a write at now_ms may store. */
static uint64_t atime_cap(uint64_t now_ms) {
  return now_ms > UINT64_MAX - ATIME_SLACK_MS ? UINT64_MAX
                                              : now_ms + ATIME_SLACK_MS;
}

/* The access time a write at now_ms stores, given the newest one in the
 * index: the clock never goes backwards, but never far ahead of now_ms. */
static uint64_t next_atime(uint64_t now_ms, uint64_t newest) {
  uint64_t t = now_ms > newest ? now_ms : newest;
  return t < atime_cap(now_ms) ? t : atime_cap(now_ms);
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
  *t = ratchet__store_get_u64be(k.mv_data);
  return 0;
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
    return ratchet__store_fail(-EINVAL,
                               "ratchet_store_put: NULL data with a length");
  if (po->manifest_len > UINT32_MAX)
    return ratchet__store_fail(-EINVAL,
                               "ratchet_store_put: manifest too large");
  if (po->name != NULL) {
    size_t nl = strnlen(po->name, NAME_MAX_BYTES + 1);
    if (nl == 0 || nl > NAME_MAX_BYTES)
      return ratchet__store_fail(-EINVAL,
                                 "ratchet_store_put: a task name must have 1 "
                                 "to %u bytes",
                                 NAME_MAX_BYTES);
  }
  uint64_t rec = (uint64_t)REC_HEADER + po->manifest_len;
  if (it->len > UINT32_MAX - rec || rec + it->len + KEY_BYTES > s->max_bytes)
    return ratchet__store_fail(
        RATCHET_ECACHE_TOO_BIG,
        "cache store %s: a value of %zu bytes does not fit under "
        "max_bytes (%llu)",
        s->dir, it->len, (unsigned long long)s->max_bytes);
  *acc = rec + it->len + KEY_BYTES;
  return 0;
}

static int put_one(ratchet_store *s, struct ratchet__store_wtx *w,
                   const ratchet_store_item *it, uint64_t now_ms,
                   uint64_t atime) {
  const ratchet_store_put_options *po = &it->opts;
  unsigned char k[KEY_BYTES], ik[IDX_BYTES], tb[8];
  ratchet_cache_key_bytes(&it->key, k);
  uint64_t expires = ratchet_store_expiry(s, po->ttl_ms, now_ms);
  int rc = ratchet__store_del_entry(s, w, k);
  if (rc != 0 && rc != MDB_NOTFOUND)
    return rc;
  size_t mlen = po->manifest_len;
  size_t size = REC_HEADER + mlen + it->len;
  MDB_val kv = ratchet__store_val(k, KEY_BYTES), v;
  v.mv_size = size;
  v.mv_data = NULL;
  if ((rc = mdb_put(w->txn, s->entries, &kv, &v, MDB_RESERVE)) != 0)
    return rc;
  ratchet__store_rec_write(v.mv_data, k, po->manifest, mlen, it->value, it->len,
                           now_ms, expires);

  ratchet__store_put_u64be(tb, atime);
  MDB_val tv = ratchet__store_val(tb, 8), empty = ratchet__store_val("", 0);
  if ((rc = mdb_put(w->txn, s->atimes, &kv, &tv, 0)) != 0)
    return rc;
  ratchet__store_idx_key(ik, atime, k);
  MDB_val iv = ratchet__store_val(ik, IDX_BYTES);
  if ((rc = mdb_put(w->txn, s->lru, &iv, &empty, 0)) != 0)
    return rc;
  if (expires != 0) {
    ratchet__store_idx_key(ik, expires, k);
    if ((rc = mdb_put(w->txn, s->exp, &iv, &empty, 0)) != 0)
      return rc;
  }
  if (po->name != NULL) {
    MDB_val nk = ratchet__store_val(po->name, strlen(po->name)), nv;
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
  struct ratchet__store_wtx w;
  uint64_t newest;
  int rc = ratchet__store_wtx_begin(s, &w);
  if (rc != 0)
    return rc;
  if ((rc = lru_newest(s, w.txn, &newest)) != 0)
    goto abort;
  uint64_t atime = next_atime(now_ms, newest);
  for (size_t i = 0; i < n; i++)
    if ((rc = put_one(s, &w, &items[i], now_ms, atime)) != 0)
      goto abort;
  if ((rc = ratchet__store_collect(s, &w, now_ms, STEP_BUDGET, s->max_bytes)) !=
      0)
    goto abort;
  *gc = w.gc;
  return ratchet__store_wtx_commit(s, &w);
abort:
  ratchet__store_txn_abort(s, w.txn);
  return rc;
}

int ratchet_store_put_batch(ratchet_store *s, const ratchet_store_item *items,
                            size_t n, uint64_t now_ms) {
  ratchet_store_gc_result gc = {0, 0, 0, 0};
  uint64_t total = 0, acc = 0;
  if (s == NULL || (items == NULL && n != 0))
    return ratchet__store_fail(-EINVAL, "ratchet_store_put: NULL argument");
  for (size_t i = 0; i < n; i++) {
    int rc = check_item(s, &items[i], &acc);
    if (rc != 0)
      return rc;
    total = acc > UINT64_MAX - total ? UINT64_MAX : total + acc;
  }
  /* The collection inside the transaction would otherwise evict the
   * batch's own items to get under max_bytes: all or none means none. */
  if (total > s->max_bytes)
    return ratchet__store_fail(
        RATCHET_ECACHE_TOO_BIG,
        "cache store %s: a batch of %llu bytes does not fit under "
        "max_bytes (%llu)",
        s->dir, (unsigned long long)total, (unsigned long long)s->max_bytes);
  if (n == 0)
    return 0;
  int rc = put_txn(s, items, n, now_ms, &gc);
  if (ratchet__store_is_full(rc)) {
    ratchet_store_stats st;
    ratchet_store_stats_get(s, &st);
    uint64_t goal = st.bytes / 2 > 2 * total ? st.bytes / 2 : 2 * total;
    int rr = ratchet__store_make_room(s, goal);
    if (rr != 0 && !ratchet__store_is_full(rr))
      return ratchet__store_fail_mdb(s, rr, "making room");
    rc = put_txn(s, items, n, now_ms, &gc);
  }
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "storing a value");
  ratchet__store_count_gc(s, &gc);
  atomic_fetch_add(&s->puts, n);
  return 0;
}

int ratchet_store_put(ratchet_store *s, const ratchet_cache_key *key,
                      const void *value, size_t len,
                      const ratchet_store_put_options *po, uint64_t now_ms) {
  ratchet_store_item it;
  if (key == NULL)
    return ratchet__store_fail(-EINVAL, "ratchet_store_put: NULL key");
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
  struct ratchet__store_wtx w;
  MDB_val kv = ratchet__store_val(k, KEY_BYTES), v;
  if (ratchet__store_wtx_begin(s, &w) != 0)
    return;
  int rc = mdb_get(w.txn, s->entries, &kv, &v);
  if (rc == 0 && ratchet__store_rec_same(&v, header, hlen))
    rc = ratchet__store_del_entry(s, &w, k);
  else
    rc = MDB_NOTFOUND;
  if (rc == 0)
    ratchet__store_wtx_commit(s, &w);
  else
    ratchet__store_txn_abort(s, w.txn);
}

/* Moves key's access time to now if it is older than touch_interval_ms, or
 * further ahead than ATIME_SLACK_MS. */
static void touch(ratchet_store *s, const unsigned char k[KEY_BYTES],
                  uint64_t now_ms) {
  struct ratchet__store_wtx w;
  MDB_val kv = ratchet__store_val(k, KEY_BYTES), v;
  unsigned char ik[IDX_BYTES], tb[8];
  uint64_t newest;
  if (ratchet__store_wtx_begin(s, &w) != 0)
    return;
  int rc = mdb_get(w.txn, s->atimes, &kv, &v);
  if (rc != 0 || v.mv_size != 8)
    goto abort;
  uint64_t old = ratchet__store_get_u64be(v.mv_data);
  if (old <= atime_cap(now_ms) &&
      (now_ms < old || now_ms - old < s->touch_interval_ms))
    goto abort; /* someone else touched it */
  if (lru_newest(s, w.txn, &newest) != 0)
    goto abort;
  uint64_t t = next_atime(now_ms, newest);
  ratchet__store_idx_key(ik, old, k);
  if (ratchet__store_del_quiet(w.txn, s->lru, ik, IDX_BYTES) != 0)
    goto abort;
  ratchet__store_idx_key(ik, t, k);
  ratchet__store_put_u64be(tb, t);
  MDB_val iv = ratchet__store_val(ik, IDX_BYTES),
          tv = ratchet__store_val(tb, 8), empty = ratchet__store_val("", 0);
  if (mdb_put(w.txn, s->lru, &iv, &empty, 0) != 0 ||
      mdb_put(w.txn, s->atimes, &kv, &tv, 0) != 0)
    goto abort;
  ratchet__store_wtx_commit(s, &w);
  return;
abort:
  ratchet__store_txn_abort(s, w.txn);
}

enum { WANT_VALUE, WANT_MANIFEST };

static int lookup(ratchet_store *s, const ratchet_cache_key *key,
                  uint64_t now_ms, int want, void **out, size_t *len,
                  ratchet_store_meta *meta) {
  unsigned char k[KEY_BYTES], header[REC_HEADER];
  size_t hlen = 0;
  MDB_txn *txn;
  MDB_val kv, v;
  struct ratchet__store_rec r;
  bool expired = false, bad = false, do_touch = false;
  void *copy = NULL;
  size_t n = 0;
  if (s == NULL || key == NULL || out == NULL || len == NULL)
    return ratchet__store_fail(-EINVAL, "ratchet_store_get: NULL argument");
  ratchet_cache_key_bytes(key, k);
  kv = ratchet__store_val(k, KEY_BYTES); /* after k is filled (GCC 12) */
  int rc = ratchet__store_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "starting a read");
  rc = mdb_get(txn, s->entries, &kv, &v);
  if (rc == MDB_NOTFOUND) {
    ratchet__store_txn_abort(s, txn);
    atomic_fetch_add(&s->misses, 1);
    return RATCHET_ECACHE_MISS;
  }
  if (rc != 0) {
    ratchet__store_txn_abort(s, txn);
    return ratchet__store_fail_mdb(s, rc, "reading an entry");
  }
  hlen = v.mv_size < REC_HEADER ? v.mv_size : REC_HEADER;
  memcpy(header, v.mv_data, hlen);
  if (!ratchet__store_rec_parse(&v, &r) || !ratchet__store_rec_verify(k, &r)) {
    bad = true;
  } else if (r.expires_ms != 0 && now_ms >= r.expires_ms) {
    expired = true;
  } else {
    n = want == WANT_VALUE ? (size_t)r.value_len : r.manifest_len;
    copy = ratchet_malloc(n ? n : 1);
    if (copy == NULL) {
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail(-ENOMEM, "cache store %s: out of memory",
                                 s->dir);
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
      uint64_t at = ratchet__store_get_u64be(v.mv_data);
      do_touch = at > atime_cap(now_ms) ||
                 (now_ms >= at && now_ms - at >= s->touch_interval_ms);
    }
  }
  ratchet__store_txn_abort(s, txn);
  if (bad || expired) {
    delete_if_same(s, k, header, hlen);
    if (expired) {
      atomic_fetch_add(&s->expirations, 1);
      atomic_fetch_add(&s->misses, 1);
      return RATCHET_ECACHE_MISS;
    }
    char hex[RATCHET_CACHE_KEY_HEX_SIZE];
    atomic_fetch_add(&s->corrupt, 1);
    return ratchet__store_fail(
        RATCHET_ECACHE_CORRUPT,
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
    return ratchet__store_fail(-EINVAL,
                               "ratchet_store_last_manifest: NULL argument");
  size_t nl = strnlen(name, NAME_MAX_BYTES + 1);
  if (nl == 0 || nl > NAME_MAX_BYTES)
    return RATCHET_ECACHE_MISS;
  MDB_val nk = ratchet__store_val(name, nl);
  int rc = ratchet__store_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "starting a read");
  rc = mdb_get(txn, s->names, &nk, &v);
  if (rc == 0 && v.mv_size < KEY_BYTES)
    rc = MDB_CORRUPTED;
  if (rc != 0) {
    ratchet__store_txn_abort(s, txn);
    return rc == MDB_NOTFOUND
               ? RATCHET_ECACHE_MISS
               : ratchet__store_fail_mdb(s, rc, "reading a task name");
  }
  const unsigned char *p = v.mv_data;
  size_t n = v.mv_size - KEY_BYTES;
  void *copy = ratchet_malloc(n ? n : 1);
  if (copy == NULL) {
    ratchet__store_txn_abort(s, txn);
    return ratchet__store_fail(-ENOMEM, "cache store %s: out of memory",
                               s->dir);
  }
  key->hi = ratchet__store_get_u64be(p);
  key->lo = ratchet__store_get_u64be(p + 8);
  if (n)
    memcpy(copy, p + KEY_BYTES, n);
  ratchet__store_txn_abort(s, txn);
  *manifest = copy;
  *len = n;
  return 0;
}

/* ---- invalidation ---- */

int ratchet_store_invalidate(ratchet_store *s, const ratchet_cache_key *key) {
  struct ratchet__store_wtx w;
  unsigned char k[KEY_BYTES];
  if (s == NULL || key == NULL)
    return ratchet__store_fail(-EINVAL,
                               "ratchet_store_invalidate: NULL argument");
  ratchet_cache_key_bytes(key, k);
  int rc = ratchet__store_wtx_begin(s, &w);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "starting a write");
  rc = ratchet__store_del_entry(s, &w, k);
  if (rc != 0) {
    ratchet__store_txn_abort(s, w.txn);
    return rc == MDB_NOTFOUND
               ? RATCHET_ECACHE_MISS
               : ratchet__store_fail_mdb(s, rc, "deleting an entry");
  }
  rc = ratchet__store_wtx_commit(s, &w);
  return rc == 0 ? 0 : ratchet__store_fail_mdb(s, rc, "deleting an entry");
}

int ratchet_store_clear(ratchet_store *s) {
  struct ratchet__store_wtx w;
  if (s == NULL)
    return ratchet__store_fail(-EINVAL, "ratchet_store_clear: NULL store");
  int rc = ratchet__store_wtx_begin(s, &w);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "starting a write");
  MDB_dbi dbis[] = {s->entries, s->atimes, s->lru, s->exp, s->names};
  for (size_t i = 0; i < sizeof dbis / sizeof dbis[0] && rc == 0; i++)
    rc = mdb_drop(w.txn, dbis[i], 0);
  if (rc != 0) {
    ratchet__store_txn_abort(s, w.txn);
    return ratchet__store_fail_mdb(s, rc, "clearing");
  }
  w.entries = 0;
  w.bytes = 0;
  rc = ratchet__store_wtx_commit(s, &w);
  return rc == 0 ? 0 : ratchet__store_fail_mdb(s, rc, "clearing");
}
