/*
 * store_txn.c - the persistent tier's write transactions, and the removal
 * of one entry with its index rows.
 *
 * Every change (a put with its index rows, its statistics and the
 * collection it triggers) is one LMDB write transaction, so a crash at any
 * moment leaves the previous committed state: LMDB writes new pages beside
 * the old ones and flips one of two meta pages last, and needs no recovery
 * step. A write transaction (struct ratchet__store_wtx) therefore carries
 * the store's statistics: it reads the meta table's "stats" record (entries
 * and logical bytes, u64 LE each) when it begins, the changes inside it
 * adjust the copy, and the commit writes it back, so the statistics change
 * in the same commit as the tables they count.
 *
 * An entry is one row in `entries` plus its index rows: its access time in
 * `atimes` and `lru`, and its expiry in `exp` if it has one. Removing an
 * entry removes them all in the same transaction. An index row that is
 * already missing is not an error; one that a damaged record no longer
 * leads to stays behind as a stale row, which collection (store_gc.c)
 * recognises and removes.
 *
 * Every transaction holds the store's remap lock shared from begin to
 * commit or abort. When another process has grown the map beyond this
 * one's (MDB_MAP_RESIZED), LMDB must remap, which it allows only while the
 * process has no transaction open: readers copy values straight out of
 * the map. The thread that sees it takes the lock exclusively, so the
 * remap waits for the transactions in flight and no other can start.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "store_private.h"

/* How many times one begin adopts a grown map before giving up with
 * MDB_MAP_RESIZED (-EAGAIN): another process would have to grow it again
 * each time. */
#define REMAP_TRIES 8

int ratchet__store_txn_begin(ratchet_store *s, unsigned flags, MDB_txn **txn) {
  for (int i = 0;; i++) {
    pthread_rwlock_rdlock(&s->remap);
    uint64_t seen = s->remaps;
    int rc = mdb_txn_begin(s->env, NULL, flags, txn);
    if (rc == 0)
      return 0; /* the hold lasts until the transaction ends */
    pthread_rwlock_unlock(&s->remap);
    if (rc != MDB_MAP_RESIZED || i == REMAP_TRIES)
      return rc;
    /* Another process grew the map. LMDB may move the map only while no
     * transaction of this process uses it: wait for them all to end, and
     * remap unless another thread already did while we waited. The lock
     * is taken before LMDB's writer mutex and released after it, as on
     * every other path, so the two cannot deadlock. */
    pthread_rwlock_wrlock(&s->remap);
    if (s->remaps == seen) {
      mdb_env_set_mapsize(s->env, 0);
      s->remaps++;
    }
    pthread_rwlock_unlock(&s->remap);
  }
}

void ratchet__store_txn_abort(ratchet_store *s, MDB_txn *txn) {
  mdb_txn_abort(txn);
  pthread_rwlock_unlock(&s->remap);
}

int ratchet__store_txn_commit(ratchet_store *s, MDB_txn *txn) {
  int rc = mdb_txn_commit(txn);
  pthread_rwlock_unlock(&s->remap);
  return rc;
}

int ratchet__store_wtx_begin(ratchet_store *s, struct ratchet__store_wtx *w) {
  MDB_val k = ratchet__store_val("stats", 5), v;
  memset(w, 0, sizeof *w);
  int rc = ratchet__store_txn_begin(s, 0, &w->txn);
  if (rc != 0)
    return rc;
  rc = mdb_get(w->txn, s->meta, &k, &v);
  if (rc == 0 && v.mv_size != 16)
    rc = MDB_CORRUPTED;
  if (rc != 0) {
    ratchet__store_txn_abort(s, w->txn);
    w->txn = NULL; /* so no caller can abort it a second time */
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  }
  w->entries = ratchet__store_get_u64le(v.mv_data);
  w->bytes = ratchet__store_get_u64le((const unsigned char *)v.mv_data + 8);
  return 0;
}

int ratchet__store_wtx_commit(ratchet_store *s, struct ratchet__store_wtx *w) {
  unsigned char buf[16];
  MDB_val k = ratchet__store_val("stats", 5), v = ratchet__store_val(buf, 16);
  ratchet__store_put_u64le(buf, w->entries);
  ratchet__store_put_u64le(buf + 8, w->bytes);
  int rc = mdb_put(w->txn, s->meta, &k, &v, 0);
  if (rc != 0) {
    ratchet__store_txn_abort(s, w->txn);
    return rc;
  }
  return ratchet__store_txn_commit(s, w->txn);
}

/* Deletes a key from a database, treating "not there" as done. */
int ratchet__store_del_quiet(MDB_txn *txn, MDB_dbi dbi, const void *k,
                             size_t n) {
  MDB_val kv = ratchet__store_val(k, n);
  int rc = mdb_del(txn, dbi, &kv, NULL);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Removes an entry and its index rows. MDB_NOTFOUND if it is absent. */
int ratchet__store_del_entry(ratchet_store *s, struct ratchet__store_wtx *w,
                             const unsigned char k[KEY_BYTES]) {
  MDB_val kv = ratchet__store_val(k, KEY_BYTES), v;
  unsigned char ik[IDX_BYTES];
  struct ratchet__store_rec r;
  int rc = mdb_get(w->txn, s->entries, &kv, &v);
  if (rc != 0)
    return rc;
  uint64_t size = v.mv_size + KEY_BYTES;
  if (ratchet__store_rec_parse(&v, &r) && r.expires_ms != 0) {
    ratchet__store_idx_key(ik, r.expires_ms, k);
    if ((rc = ratchet__store_del_quiet(w->txn, s->exp, ik, IDX_BYTES)) != 0)
      return rc;
  }
  rc = mdb_get(w->txn, s->atimes, &kv, &v);
  if (rc == 0 && v.mv_size == 8) {
    ratchet__store_idx_key(ik, ratchet__store_get_u64be(v.mv_data), k);
    if ((rc = ratchet__store_del_quiet(w->txn, s->lru, ik, IDX_BYTES)) != 0)
      return rc;
  } else if (rc != 0 && rc != MDB_NOTFOUND) {
    return rc;
  }
  if ((rc = ratchet__store_del_quiet(w->txn, s->atimes, k, KEY_BYTES)) != 0)
    return rc;
  if ((rc = mdb_del(w->txn, s->entries, &kv, NULL)) != 0)
    return rc;
  w->entries = w->entries ? w->entries - 1 : 0;
  w->bytes = w->bytes > size ? w->bytes - size : 0;
  w->gc.bytes_freed += size;
  return 0;
}
