/*
 * store_format.c - the persistent tier's tables and format record, checked
 * (or created) when a store opens.
 *
 * Layout. One environment per directory, six named databases:
 *   meta     "format" -> u32 LE format version; "writer" -> the ratchet
 *            version that created it; "stats" -> entries, bytes (u64 LE)
 *   entries  key (16 bytes) -> record (store_record.c), never modified in
 *            place
 *   atimes   key -> last access time (u64 BE, ms)
 *   lru      access time (u64 BE) | key -> empty: the eviction order
 *   exp      expiry time (u64 BE) | key -> empty: entries with a TTL
 *   names    task name -> key | manifest: the last manifest per task name
 *
 * Before a store is used, open (store.c) has LMDB check its own header and
 * then checks here that the data file is as long as its pages say (LMDB
 * would die of SIGBUS past its end) and that the environment is a ratchet
 * store: a format record this library can read, all six tables, and
 * statistics that agree with them. An empty environment gets the tables and
 * the meta records in the same transaction, so that a store is either
 * complete or, to the next open, still empty. A store of a newer format is
 * refused and left untouched; anything else that does not fit is reported
 * as damage, with the way out (REBUILD_HINT).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <lmdb.h>

#include "ratchet/error.h"
#include "ratchet/store.h"
#include "ratchet/version.h"
#include "store_private.h"

static int open_dbi(ratchet_store *s, MDB_txn *txn, const char *name,
                    unsigned flags, MDB_dbi *dbi) {
  int rc = mdb_dbi_open(txn, name, flags, dbi);
  if (rc == MDB_NOTFOUND)
    return ratchet__store_fail(
        RATCHET_ECACHE_CORRUPT,
        "cache store %s is damaged: its '%s' table is missing; %s", s->dir,
        name, REBUILD_HINT);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "opening its tables");
  return 0;
}

/* Checks the format record, creating the tables of a fresh store. Runs in
 * one write transaction that is aborted unless the store is ours. */
int ratchet__store_check_format(ratchet_store *s) {
  MDB_txn *txn;
  MDB_dbi main_dbi;
  MDB_val k, v;
  MDB_stat st;
  bool fresh = false;
  int rc = ratchet__store_txn_begin(s, 0, &txn);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc, "starting the first transaction");
  rc = mdb_dbi_open(txn, "meta", 0, &s->meta);
  if (rc == MDB_NOTFOUND) {
    rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    if (rc == 0)
      rc = mdb_stat(txn, main_dbi, &st);
    if (rc != 0) {
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail_mdb(s, rc, "reading its tables");
    }
    if (st.ms_entries != 0) {
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail(
          RATCHET_ECACHE_CORRUPT,
          "%s holds an LMDB environment that is not a ratchet cache "
          "store (no format record); %s",
          s->dir, REBUILD_HINT);
    }
    fresh = true;
  } else if (rc != 0) {
    ratchet__store_txn_abort(s, txn);
    return rc == MDB_INCOMPATIBLE
               ? ratchet__store_fail(RATCHET_ECACHE_CORRUPT,
                                     "%s is not a ratchet cache store; %s",
                                     s->dir, REBUILD_HINT)
               : ratchet__store_fail_mdb(s, rc, "reading its format record");
  }
  if (!fresh) {
    k = ratchet__store_val("format", 6);
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc != 0 || v.mv_size != 4) {
      ratchet__store_txn_abort(s, txn);
      if (rc != 0 && rc != MDB_NOTFOUND)
        return ratchet__store_fail_mdb(s, rc, "reading its format record");
      return ratchet__store_fail(
          RATCHET_ECACHE_CORRUPT,
          "cache store %s is damaged: its format record is missing "
          "or malformed; %s",
          s->dir, REBUILD_HINT);
    }
    uint32_t format = ratchet__store_get_u32le(v.mv_data);
    if (format > RATCHET_STORE_FORMAT) {
      char writer[64] = "a newer ratchet";
      k = ratchet__store_val("writer", 6);
      if (mdb_get(txn, s->meta, &k, &v) == 0 && v.mv_size > 0 &&
          v.mv_size < sizeof writer) {
        memcpy(writer, v.mv_data, v.mv_size);
        writer[v.mv_size] = '\0';
        for (size_t i = 0; i < v.mv_size; i++)
          if (writer[i] < 0x20 || writer[i] > 0x7e)
            writer[i] = '?';
      }
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail(
          RATCHET_ECACHE_VERSION,
          "cache store %s has format %u (written by %s); this "
          "ratchet (%s) reads format %d. Use the newer ratchet, "
          "or start over (the store is left untouched until you do): "
          "%s",
          s->dir, (unsigned)format, writer, RATCHET_VERSION_STRING,
          RATCHET_STORE_FORMAT, REBUILD_HINT);
    }
    if (format == 0) {
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail(
          RATCHET_ECACHE_CORRUPT,
          "cache store %s is damaged: format 0 is not valid; %s", s->dir,
          REBUILD_HINT);
    }
  }
  unsigned cf = fresh ? MDB_CREATE : 0;
  if ((rc = fresh ? open_dbi(s, txn, "meta", cf, &s->meta) : 0) != 0 ||
      (rc = open_dbi(s, txn, "entries", cf, &s->entries)) != 0 ||
      (rc = open_dbi(s, txn, "atimes", cf, &s->atimes)) != 0 ||
      (rc = open_dbi(s, txn, "lru", cf, &s->lru)) != 0 ||
      (rc = open_dbi(s, txn, "exp", cf, &s->exp)) != 0 ||
      (rc = open_dbi(s, txn, "names", cf, &s->names)) != 0) {
    ratchet__store_txn_abort(s, txn);
    return rc;
  }
  if (fresh) {
    unsigned char fmt[4], stats[16] = {0};
    ratchet__store_put_u32le(fmt, RATCHET_STORE_FORMAT);
    MDB_val fk = ratchet__store_val("format", 6),
            fv = ratchet__store_val(fmt, 4);
    MDB_val wk = ratchet__store_val("writer", 6);
    MDB_val wv = ratchet__store_val("ratchet " RATCHET_VERSION_STRING,
                                    strlen("ratchet " RATCHET_VERSION_STRING));
    MDB_val sk = ratchet__store_val("stats", 5),
            sv = ratchet__store_val(stats, 16);
    if ((rc = mdb_put(txn, s->meta, &fk, &fv, 0)) != 0 ||
        (rc = mdb_put(txn, s->meta, &wk, &wv, 0)) != 0 ||
        (rc = mdb_put(txn, s->meta, &sk, &sv, 0)) != 0) {
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail_mdb(s, rc, "creating the store");
    }
  } else {
    /* The tables must agree with each other and with the statistics. */
    MDB_stat e, a, l;
    k = ratchet__store_val("stats", 5);
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == 0)
      rc = mdb_stat(txn, s->entries, &e);
    if (rc == 0)
      rc = mdb_stat(txn, s->atimes, &a);
    if (rc == 0)
      rc = mdb_stat(txn, s->lru, &l);
    if (rc != 0 && rc != MDB_NOTFOUND) {
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail_mdb(s, rc, "reading its statistics");
    }
    if (rc == MDB_NOTFOUND || v.mv_size != 16 ||
        ratchet__store_get_u64le(v.mv_data) != e.ms_entries ||
        e.ms_entries != a.ms_entries || e.ms_entries != l.ms_entries) {
      ratchet__store_txn_abort(s, txn);
      return ratchet__store_fail(
          RATCHET_ECACHE_CORRUPT,
          "cache store %s is damaged: its tables disagree; %s", s->dir,
          REBUILD_HINT);
    }
  }
  rc = ratchet__store_txn_commit(s, txn);
  if (rc != 0)
    return ratchet__store_fail_mdb(s, rc,
                                   fresh ? "creating the store" : "opening it");
  return 0;
}

/* Refuses a data file shorter than its last page: LMDB maps the file and
 * would die of SIGBUS reading past its end. */
int ratchet__store_check_length(ratchet_store *s) {
  MDB_envinfo info;
  MDB_stat st;
  int fd;
  struct stat sb;
  if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0 ||
      mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, &sb) != 0)
    return ratchet__store_fail(-EIO, "cache store %s: cannot inspect data.mdb",
                               s->dir);
  uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  if ((uint64_t)sb.st_size < need)
    return ratchet__store_fail(
        RATCHET_ECACHE_CORRUPT,
        "cache store %s is damaged: data.mdb has %llu bytes but its "
        "pages reach %llu (truncated); %s",
        s->dir, (unsigned long long)sb.st_size, (unsigned long long)need,
        REBUILD_HINT);
  return 0;
}
