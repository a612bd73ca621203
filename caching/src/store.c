/*
 * store.c - the persistent tier: task results in an LMDB environment. This
 * file opens, closes and destroys stores, reports their failures, and
 * answers for a store as a whole (statistics, sync); the rest of the tier
 * shares store_private.h:
 *   store_format.c  the tables and the format record, checked on open
 *   store_record.c  the record that holds a value, and its checksum
 *   store_txn.c     write transactions and the removal of an entry
 *   store_io.c      put, get, the manifests, invalidate and clear
 *   store_gc.c      collection by expiry, age and size; a full map; verify
 *
 * Failure policy. LMDB's own error codes are mapped to ratchet's (they fall
 * in ratchet's numeric range and must never leak); each failure writes a
 * message into a thread-local buffer (ratchet_store_last_error). Damage is
 * detected at three levels: on open, where this file refuses a data.mdb
 * that is not an LMDB file and store_format.c one shorter than its last
 * page, without a consistent ratchet header, or of a newer format; by LMDB
 * while walking pages (MDB_CORRUPTED, MDB_PAGE_NOTFOUND); and by the record
 * checksum. With rebuild_if_corrupt, open replaces a damaged store with an
 * empty one. A full map or disk (MDB_MAP_FULL, ENOSPC) triggers a
 * collection in its own transactions - pages freed by a committed
 * transaction are reusable - and one retry (store_io.c, store_gc.c).
 *
 * LMDB forbids opening one environment twice in a process (closing either
 * would drop the other's locks), so open stores are registered by device
 * and inode and a second open fails with -EBUSY.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/store.h"
#include "store_private.h"

#define MIN_MAP (UINT64_C(128) << 10)
#define ERRBUF  1024

/* ---- messages ---- */

static _Thread_local char last_err[ERRBUF];

const char *ratchet_store_last_error(void) {
  return last_err;
}

int ratchet__store_fail(int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_err, sizeof last_err, fmt, ap);
  va_end(ap);
  return rc;
}

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

bool ratchet__store_is_full(int rc) {
  return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT || rc == EFBIG;
}

/* Reports an LMDB failure of `what` on store s. */
int ratchet__store_fail_mdb(const ratchet_store *s, int rc, const char *what) {
  int r = map_mdb(rc);
  const char *dir = s ? s->dir : "?";
  if (r == RATCHET_ECACHE_CORRUPT)
    return ratchet__store_fail(r, "cache store %s is damaged (%s while %s); %s",
                               dir, mdb_strerror(rc), what, REBUILD_HINT);
  if (rc == MDB_TXN_FULL)
    return ratchet__store_fail(
        r,
        "cache store %s: one transaction is too large (%s); "
        "store fewer items per batch",
        dir, mdb_strerror(rc));
  if (r == RATCHET_ECACHE_FULL)
    return ratchet__store_fail(
        r,
        "cache store %s is full (%s while %s): raise map_size, "
        "lower max_bytes, free disk space, or clear the cache",
        dir, mdb_strerror(rc), what);
  if (rc == MDB_PANIC)
    return ratchet__store_fail(
        r,
        "cache store %s: LMDB hit a fatal I/O error (%s) while "
        "%s; close and reopen the store",
        dir, mdb_strerror(rc), what);
  return ratchet__store_fail(r, "cache store %s: %s while %s", dir,
                             mdb_strerror(rc), what);
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
    return ratchet__store_fail(-ENOENT,
                               "no cache directory: neither XDG_CACHE_HOME (an "
                               "absolute path) nor HOME is set");
  if (n < 0 || (size_t)n >= len)
    return ratchet__store_fail(-ENAMETOOLONG,
                               "cache directory path is too long");
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
      rc = ratchet__store_fail(-ENOMEM, "cache store %s: out of memory", dir);
    else if (unlink(p) != 0 && errno != ENOENT)
      rc = ratchet__store_fail(-errno, "cannot remove %s: %s", p,
                               strerror(errno));
    ratchet_free(p);
  }
  if (rc == 0 && rmdir(dir) != 0 && errno != ENOENT && errno != ENOTEMPTY &&
      errno != EEXIST)
    rc = ratchet__store_fail(-errno, "cannot remove %s: %s", dir,
                             strerror(errno));
  return rc;
}

int ratchet_store_destroy(const char *dir) {
  struct stat sb;
  if (dir == NULL || dir[0] == '\0')
    return ratchet__store_fail(-EINVAL, "ratchet_store_destroy: no directory");
  pthread_mutex_lock(&reg_lock);
  int rc;
  if (stat(dir, &sb) == 0 && reg_has(sb.st_dev, sb.st_ino))
    rc = ratchet__store_fail(-EBUSY,
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

static int env_create(ratchet_store *s, uint64_t map, unsigned readers) {
  int rc = mdb_env_create(&s->env);
  if (rc != 0) {
    s->env = NULL;
    return ratchet__store_fail(
        map_mdb(rc), "cache store %s: cannot create an LMDB handle", s->dir);
  }
  mdb_env_set_maxdbs(s->env, 8);
  mdb_env_set_mapsize(s->env, (size_t)map);
  mdb_env_set_maxreaders(s->env, readers);
  return 0;
}

static void set_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFD);
  if (fl >= 0 && !(fl & FD_CLOEXEC))
    fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

/*
 * Marks the environment's descriptors close-on-exec, so that programs this
 * process spawns do not inherit a writable handle to the cache. LMDB opens
 * data.mdb without O_CLOEXEC (and, with fsync durability, a second handle
 * for the meta pages), and offers only the first through its API: where
 * /proc/self/fd exists, every descriptor open on data.mdb or lock.mdb is
 * marked. A thread that spawns during mdb_env_open can still leak them.
 */
static void cloexec_env(ratchet_store *s, const char *data, const char *lock) {
  struct stat ds, ls, sb;
  int fd;
  if (mdb_env_get_fd(s->env, &fd) == 0)
    set_cloexec(fd);
  if (stat(data, &ds) != 0 || stat(lock, &ls) != 0)
    return;
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    char *end;
    long n = strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || n < 0 || n > INT_MAX ||
        n == dirfd(d) || fstat((int)n, &sb) != 0)
      continue;
    if ((sb.st_dev == ds.st_dev && sb.st_ino == ds.st_ino) ||
        (sb.st_dev == ls.st_dev && sb.st_ino == ls.st_ino))
      set_cloexec((int)n);
  }
  closedir(d);
}

/* Opens the environment in s->dir: everything but the registry. */
/* Whether data.mdb is the start of a creation killed half-way: shorter
 * than LMDB's two meta pages, and empty or the head of a first meta page:
 * page number 0 (a size_t), the rest of the page header (8 bytes), then
 * LMDB's magic in native byte order once the file is that long. Such a
 * file holds no committed data and is made again; anything else that
 * short is some other file and is refused as damaged, never deleted. */
#define META_MAGIC_AT (sizeof(size_t) + 8)
static bool half_created(const char *data) {
  struct stat sb;
  long page = sysconf(_SC_PAGESIZE);
  if (stat(data, &sb) != 0 || page <= 0 || sb.st_size >= 2 * page)
    return false;
  if (sb.st_size == 0)
    return true;
  unsigned char head[META_MAGIC_AT + 4];
  size_t want =
      (size_t)sb.st_size < sizeof head ? (size_t)sb.st_size : sizeof head;
  int fd = open(data, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t n = pread(fd, head, want, 0);
  close(fd);
  if (n < 0 || (size_t)n != want)
    return false;
  static const unsigned char zero[sizeof(size_t)];
  if (memcmp(head, zero, want < sizeof zero ? want : sizeof zero) != 0)
    return false;
  if (want < sizeof head)
    return true;
  uint32_t magic;
  memcpy(&magic, head + META_MAGIC_AT, sizeof magic);
  return magic == 0xBEEFC0DEu;
}

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
  if (rc == MDB_INVALID && half_created(data)) {
    /* Shorter than LMDB's two meta pages: a creation killed half-way,
     * which cannot hold any committed data. Start it again. */
    mdb_env_close(s->env);
    s->env = NULL;
    if (unlink(data) != 0) {
      rc = ratchet__store_fail(-errno,
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
      rc = ratchet__store_fail(
          RATCHET_ECACHE_CORRUPT,
          "cache store %s is damaged: data.mdb is not an LMDB file "
          "(bad header); %s",
          s->dir, REBUILD_HINT);
    else if (rc == MDB_VERSION_MISMATCH)
      rc = ratchet__store_fail(
          RATCHET_ECACHE_VERSION,
          "cache store %s was written by an incompatible LMDB version "
          "(this one is %s); %s",
          s->dir, MDB_VERSION_STRING, REBUILD_HINT);
    else if (rc == EACCES || rc == EPERM || rc == EROFS)
      rc = ratchet__store_fail(
          map_mdb(rc),
          "cache store %s: %s (the directory and its files must be "
          "readable and writable by this user)",
          s->dir, mdb_strerror(rc));
    else
      rc = ratchet__store_fail_mdb(s, rc, "opening the LMDB environment");
    goto out;
  }
  cloexec_env(s, data, lock);
  if (!existed) {
    /* Created just now with 0600 minus the umask: make it exactly 0600. */
    chmod(data, 0600);
    chmod(lock, 0600);
  }
  if ((rc = ratchet__store_check_length(s)) != 0)
    goto fail_env;
  int dead = 0;
  mdb_reader_check(s->env, &dead); /* slots of killed readers */
  if ((rc = ratchet__store_check_format(s)) != 0)
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
    return ratchet__store_fail(-EINVAL, "ratchet_store_open: NULL argument");
  if ((rc = check_options(o)) != 0)
    return ratchet__store_fail(rc,
                               "ratchet_store_open: an option is out of range");
  const char *dir = o->dir;
  if (dir == NULL) {
    if ((rc = ratchet_store_default_dir(defdir, sizeof defdir)) != 0)
      return rc;
    dir = defdir;
  }
  if (dir[0] == '\0')
    return ratchet__store_fail(-EINVAL,
                               "ratchet_store_open: empty directory name");
  s = ratchet_calloc(1, sizeof *s);
  if (s == NULL || (s->dir = ratchet_malloc(strlen(dir) + 1)) == NULL) {
    ratchet_free(s);
    return ratchet__store_fail(-ENOMEM, "cache store %s: out of memory", dir);
  }
  strcpy(s->dir, dir);
  if (pthread_rwlock_init(&s->remap, NULL) != 0) {
    ratchet_free(s->dir);
    ratchet_free(s);
    return ratchet__store_fail(-ENOMEM, "cache store %s: out of memory", dir);
  }
  s->max_bytes = o->max_bytes;
  s->max_age_ms = o->max_age_ms;
  s->default_ttl_ms = o->default_ttl_ms;
  s->touch_interval_ms = o->touch_interval_ms;
  if ((rc = make_dirs(dir)) != 0) {
    rc = ratchet__store_fail(rc,
                             "cache store %s: cannot create the directory: %s",
                             dir, strerror(-rc));
    goto fail_free;
  }
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    rc = ratchet__store_fail(-ENOTDIR, "cache store %s: not a directory", dir);
    goto fail_free;
  }
  s->dev = sb.st_dev;
  s->ino = sb.st_ino;
  pthread_mutex_lock(&reg_lock);
  if (reg_has(s->dev, s->ino)) {
    pthread_mutex_unlock(&reg_lock);
    rc = ratchet__store_fail(
        -EBUSY,
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
      ratchet__store_fail(0, "rebuilt an empty cache store: %s", why);
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
  pthread_rwlock_destroy(&s->remap);
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
  pthread_rwlock_destroy(&s->remap);
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

/* ---- maintenance ---- */

int ratchet_store_sync(ratchet_store *s) {
  if (s == NULL)
    return ratchet__store_fail(-EINVAL, "ratchet_store_sync: NULL store");
  int rc = mdb_env_sync(s->env, 1);
  return rc == 0 ? 0 : ratchet__store_fail_mdb(s, rc, "syncing");
}

void ratchet_store_stats_get(ratchet_store *s, ratchet_store_stats *st) {
  MDB_txn *txn;
  MDB_val k = ratchet__store_val("stats", 5), v;
  MDB_stat ns;
  MDB_envinfo info;
  struct stat sb;
  int fd;
  memset(st, 0, sizeof *st);
  st->max_bytes = s->max_bytes;
  if (ratchet__store_txn_begin(s, MDB_RDONLY, &txn) == 0) {
    if (mdb_get(txn, s->meta, &k, &v) == 0 && v.mv_size == 16) {
      st->entries = ratchet__store_get_u64le(v.mv_data);
      st->bytes =
          ratchet__store_get_u64le((const unsigned char *)v.mv_data + 8);
    }
    if (mdb_stat(txn, s->names, &ns) == 0)
      st->names = ns.ms_entries;
    ratchet__store_txn_abort(s, txn);
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
