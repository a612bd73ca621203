/*
 * store_gc.c - collection in the persistent tier: expired entries, entries
 * idle beyond max_age, the least recently used beyond max_bytes, room after
 * a full map, and damaged entries.
 *
 * Collection walks the two time-ordered indexes from their oldest row: `exp`
 * (expiry time | key) for expired entries and `lru` (access time | key) for
 * idle ones and then for size. A put collects inside its own transaction:
 * at most STEP_BUDGET (store_io.c) expired and as many idle entries, so
 * that no put pays for a long backlog, then what max_bytes requires;
 * ratchet_store_gc collects without a limit. An index row is acted on only
 * if it still describes its entry; a stale row (its entry gone or changed
 * since) is removed alone, so that it can never take a fresh entry with it.
 *
 * A full map or disk (MDB_MAP_FULL, ENOSPC) cannot be helped inside the
 * transaction that hit it: make_room drops least recently used entries in
 * transactions of their own, small enough to commit in a full map, since
 * pages freed by a committed transaction are reusable; the put then retries
 * once. ratchet_store_verify checks every record's checksum and deletes the
 * entries that fail it.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "ratchet/alloc.h"
#include "store_private.h"

/* Whether an index row still describes its entry: the entry's expiry
 * (exp) or recorded access time (lru) is the row's time. An unreadable
 * record counts as described: it is better gone. */
static int row_current(ratchet_store *s, struct ratchet__store_wtx *w,
                       MDB_dbi idx, const unsigned char row[IDX_BYTES],
                       bool *current) {
  MDB_val kv = ratchet__store_val(row + 8, KEY_BYTES), v;
  struct ratchet__store_rec r;
  int rc = mdb_get(w->txn, idx == s->exp ? s->entries : s->atimes, &kv, &v);
  if (rc != 0)
    return rc;
  if (idx == s->exp)
    *current = !ratchet__store_rec_parse(&v, &r) ||
               r.expires_ms == ratchet__store_get_u64be(row);
  else
    *current = v.mv_size != 8 || ratchet__store_get_u64be(v.mv_data) ==
                                     ratchet__store_get_u64be(row);
  return 0;
}

/* Removes the entry an index row names, or the row alone if it is stale
 * (its entry gone or changed since), so that a stray row can never take a
 * fresh entry with it. *dropped tells which. */
static int drop_row(ratchet_store *s, struct ratchet__store_wtx *w, MDB_dbi idx,
                    const unsigned char row[IDX_BYTES], bool *dropped) {
  bool current = false;
  int rc = row_current(s, w, idx, row, &current);
  *dropped = false;
  if (rc == 0 && current) {
    rc = ratchet__store_del_entry(s, w, row + 8);
    *dropped = rc == 0;
  }
  if (rc == MDB_NOTFOUND || (rc == 0 && !current))
    rc = ratchet__store_del_quiet(w->txn, idx, row, IDX_BYTES);
  return rc;
}

/* Looks at the first row of an index: MDB_NOTFOUND if empty. */
static int peek_first(ratchet_store *s, struct ratchet__store_wtx *w,
                      MDB_dbi idx, unsigned char row[IDX_BYTES]) {
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
int ratchet__store_collect(ratchet_store *s, struct ratchet__store_wtx *w,
                           uint64_t now_ms, uint64_t budget, uint64_t target) {
  unsigned char row[IDX_BYTES];
  bool dropped;
  int rc;
  for (uint64_t n = 0; budget == 0 || n < budget; n++) {
    rc = peek_first(s, w, s->exp, row);
    if (rc == MDB_NOTFOUND ||
        (rc == 0 && ratchet__store_get_u64be(row) > now_ms))
      break;
    if (rc != 0 || (rc = drop_row(s, w, s->exp, row, &dropped)) != 0)
      return rc;
    w->gc.expired += dropped;
  }
  if (s->max_age_ms != 0 && now_ms > s->max_age_ms) {
    uint64_t oldest_ok = now_ms - s->max_age_ms;
    for (uint64_t n = 0; budget == 0 || n < budget; n++) {
      rc = peek_first(s, w, s->lru, row);
      if (rc == MDB_NOTFOUND ||
          (rc == 0 && ratchet__store_get_u64be(row) >= oldest_ok))
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

void ratchet__store_count_gc(ratchet_store *s,
                             const ratchet_store_gc_result *g) {
  atomic_fetch_add(&s->expirations, g->expired);
  atomic_fetch_add(&s->evictions, g->idle + g->evicted);
}

/*
 * Frees space after MDB_MAP_FULL or ENOSPC: drops least recently used
 * entries, in transactions small enough to commit in a full map, until
 * `goal` bytes are freed or nothing is left.
 */
int ratchet__store_make_room(ratchet_store *s, uint64_t goal) {
  uint64_t freed = 0, chunk = 64;
  int dead;
  mdb_reader_check(s->env, &dead);
  while (freed < goal) {
    struct ratchet__store_wtx w;
    unsigned char row[IDX_BYTES];
    int rc = ratchet__store_wtx_begin(s, &w);
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
      rc = ratchet__store_wtx_commit(s, &w);
    else
      ratchet__store_txn_abort(s, w.txn);
    if (ratchet__store_is_full(rc) && chunk > 1) {
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
  struct ratchet__store_wtx w;
  int rc = ratchet__store_wtx_begin(s, &w);
  return rc != 0 ? rc : ratchet__store_wtx_commit(s, &w);
}

int ratchet_store_gc(ratchet_store *s, uint64_t now_ms,
                     ratchet_store_gc_result *r) {
  struct ratchet__store_wtx w;
  if (s == NULL)
    return ratchet__store_fail(-EINVAL, "ratchet_store_gc: NULL store");
  int rc = ratchet__store_wtx_begin(s, &w);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "starting a collection");
  rc = ratchet__store_collect(s, &w, now_ms, 0, s->max_bytes);
  if (rc != 0) {
    ratchet__store_txn_abort(s, w.txn);
    return ratchet__store_fail_mdb(s, rc, "collecting");
  }
  ratchet_store_gc_result g = w.gc;
  rc = ratchet__store_wtx_commit(s, &w);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "collecting");
  ratchet__store_count_gc(s, &g);
  if (r != NULL)
    *r = g;
  return 0;
}

/* A damaged entry as verify's read saw it: its key and the start of its
 * record, so that the deletion spares a record written since. */
struct bad_entry {
  unsigned char k[KEY_BYTES], header[REC_HEADER];
  size_t hlen;
};

/* Deletes the entries of bad[] that still hold the records judged, in one
 * transaction; *deleted gets their number. LMDB code. */
static int delete_bad(ratchet_store *s, const struct bad_entry *bad, size_t n,
                      uint64_t *deleted) {
  struct ratchet__store_wtx w;
  uint64_t count = 0;
  *deleted = 0;
  int rc = ratchet__store_wtx_begin(s, &w);
  if (rc != 0)
    return rc; /* no transaction to abort */
  for (size_t i = 0; i < n && rc == 0; i++) {
    MDB_val kv = ratchet__store_val(bad[i].k, KEY_BYTES), v;
    rc = mdb_get(w.txn, s->entries, &kv, &v);
    if (rc == 0 && !ratchet__store_rec_same(&v, bad[i].header, bad[i].hlen))
      rc = MDB_NOTFOUND; /* written again since: not the damaged record */
    if (rc == 0 && (rc = ratchet__store_del_entry(s, &w, bad[i].k)) == 0)
      count++;
    if (rc == MDB_NOTFOUND)
      rc = 0;
  }
  if (rc != 0) {
    ratchet__store_txn_abort(s, w.txn);
    return rc;
  }
  if ((rc = ratchet__store_wtx_commit(s, &w)) == 0)
    *deleted = count;
  return rc;
}

int ratchet_store_verify(ratchet_store *s, uint64_t *bad) {
  MDB_txn *txn;
  MDB_cursor *c;
  MDB_val k, v;
  struct bad_entry *found = NULL;
  size_t nbad = 0, cap = 0;
  uint64_t deleted = 0;
  if (bad != NULL)
    *bad = 0;
  if (s == NULL)
    return ratchet__store_fail(-EINVAL, "ratchet_store_verify: NULL store");
  int rc = ratchet__store_txn_begin(s, MDB_RDONLY, &txn);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "starting a read");
  rc = mdb_cursor_open(txn, s->entries, &c);
  if (rc != 0) {
    ratchet__store_txn_abort(s, txn);
    return ratchet__store_fail_mdb(s, rc, "verifying");
  }
  for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    struct ratchet__store_rec r;
    if (k.mv_size != KEY_BYTES)
      continue; /* no get can name it, nor ask for it: neither counted nor
                   deleted */
    if (ratchet__store_rec_parse(&v, &r) &&
        ratchet__store_rec_verify(k.mv_data, &r))
      continue;
    if (nbad == cap) {
      size_t ncap = cap ? cap * 2 : 16;
      struct bad_entry *p = ratchet_realloc(found, ncap * sizeof *p);
      if (p == NULL) {
        rc = ENOMEM;
        break;
      }
      found = p;
      cap = ncap;
    }
    struct bad_entry *e = &found[nbad++];
    memcpy(e->k, k.mv_data, KEY_BYTES);
    e->hlen = v.mv_size < REC_HEADER ? v.mv_size : REC_HEADER;
    memcpy(e->header, v.mv_data, e->hlen);
  }
  mdb_cursor_close(c);
  ratchet__store_txn_abort(s, txn);
  if (rc != MDB_NOTFOUND) {
    ratchet_free(found);
    return ratchet__store_fail_mdb(s, rc, "verifying");
  }
  rc = nbad > 0 ? delete_bad(s, found, nbad, &deleted) : 0;
  ratchet_free(found);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "deleting damaged entries");
  atomic_fetch_add(&s->corrupt, deleted);
  if (bad != NULL)
    *bad = deleted;
  return 0;
}
