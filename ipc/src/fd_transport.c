/*
 * fd_transport.c - the blocking transport over plain file descriptors, for
 * workers that do not run libuv; and the pieces both transports share: the
 * unpacker (an arena for protobuf-c) and the buffer trimming policy.
 *
 * recv reads up to 64 KiB at a time into its own buffer and feeds the
 * incremental decoder, whose callback unpacks the frame and stops the feed:
 * bytes of the next frames stay in the buffer for the next recv, so one
 * read(2) may serve many frames and nothing is read ahead of a frame the
 * caller has not asked for, beyond what the kernel had already. send encodes
 * into a buffer kept across calls and writes it whole. EINTR is retried,
 * EAGAIN (a descriptor someone made non-blocking) waits in poll(2), partial
 * transfers continue where they stopped.
 *
 * SIGPIPE: a socket is written with send(MSG_NOSIGNAL). For a pipe there is
 * no such flag, so unless the caller allows the signal, send blocks SIGPIPE
 * in its thread around the write and, if the write failed with EPIPE and no
 * SIGPIPE was pending before, consumes the one the write raised with
 * sigtimedwait before restoring the mask (the technique of PostgreSQL's
 * libpq). The process's disposition is never changed.
 *
 * The unpacker gives protobuf-c an allocator that bumps a pointer through
 * one block and ignores frees; everything of a frame is dropped at once at
 * the next unpack. A frame that does not fit takes extra blocks from
 * ratchet_malloc, and the next unpack replaces the main block with one big
 * enough, so in a steady stream unpacking allocates nothing.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ratchet/alloc.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/frame.h"
#include "ratchet/transport.h"
#include "transport_private.h"

/* ---- buffer trimming -------------------------------------------------- */

#define TRIM_KEEP   ((size_t)64 << 10)
#define TRIM_WINDOW 64

void ratchet__buf_trim(ratchet_buf *b, ratchet__trim *w, size_t used) {
  if (used > w->max)
    w->max = used;
  if (++w->n < TRIM_WINDOW)
    return;
  if (b->len == 0 && b->cap > TRIM_KEEP && w->max <= b->cap / 4) {
    size_t keep = w->max > TRIM_KEEP ? w->max : TRIM_KEEP;
    uint8_t *p = ratchet_realloc(b->data, keep);
    if (p != NULL) {
      b->data = p;
      b->cap = keep;
    }
  }
  w->max = 0;
  w->n = 0;
}

/* ---- unpacker --------------------------------------------------------- */

#define ARENA_ALIGN (alignof(max_align_t))
#define ARENA_MIN   ((size_t)4 << 10)

/* An extra block, for what did not fit in the main one. */
typedef struct extra_block {
  struct extra_block *next;
  alignas(max_align_t) unsigned char mem[];
} extra_block;

struct ratchet_unpacker {
  ProtobufCAllocator pa; /* points back at this unpacker */
  uint8_t *base;         /* the main block */
  size_t cap;
  size_t used;
  size_t need;        /* bytes asked for by the current unpack */
  extra_block *extra; /* overflow blocks of the current unpack */
  int oom;            /* an allocation of the current unpack failed */
  ratchet__trim window;
};

static void *arena_alloc(void *data, size_t size) {
  ratchet_unpacker *u = data;
  if (size > SIZE_MAX - ARENA_ALIGN - sizeof(extra_block)) {
    u->oom = 1;
    return NULL;
  }
  /* Round up to the alignment; a 0-byte request still gets its own address. */
  size_t n =
      size == 0 ? ARENA_ALIGN : (size + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
  u->need = n > SIZE_MAX - u->need ? SIZE_MAX : u->need + n;
  if (n <= u->cap - u->used) {
    void *p = u->base + u->used;
    u->used += n;
    return p;
  }
  extra_block *b = ratchet_malloc(sizeof *b + n);
  if (b == NULL) {
    u->oom = 1;
    return NULL;
  }
  b->next = u->extra;
  u->extra = b;
  return b->mem;
}

static void arena_free(void *data, void *p) {
  /* Everything goes at once, at the next reset. */
  (void)data;
  (void)p;
}

/* Forgets the last frame. If it overflowed the main block, replaces the
 * block with one that holds it (a failure leaves a smaller block, which only
 * costs extra blocks later); else counts it for the shrink policy. */
static void arena_reset(ratchet_unpacker *u) {
  while (u->extra != NULL) {
    extra_block *next = u->extra->next;
    ratchet_free(u->extra);
    u->extra = next;
  }
  ratchet_buf b = {u->base, 0, u->cap};
  if (u->need > u->cap) {
    size_t cap =
        u->cap <= SIZE_MAX / 2 && u->cap * 2 > u->need ? u->cap * 2 : u->need;
    ratchet_free(u->base);
    u->base = ratchet_malloc(cap);
    u->cap = u->base != NULL ? cap : 0;
    u->window = (ratchet__trim)RATCHET__TRIM_INIT;
  } else {
    ratchet__buf_trim(&b, &u->window, u->need);
    u->base = b.data;
    u->cap = b.cap;
  }
  u->used = 0;
  u->need = 0;
  u->oom = 0;
}

int ratchet_unpacker_new(ratchet_unpacker **out) {
  if (out == NULL)
    return -EINVAL;
  ratchet_unpacker *u = ratchet_calloc(1, sizeof *u);
  if (u == NULL)
    return -ENOMEM;
  u->base = ratchet_malloc(ARENA_MIN);
  if (u->base == NULL) {
    ratchet_free(u);
    return -ENOMEM;
  }
  u->cap = ARENA_MIN;
  u->pa.alloc = arena_alloc;
  u->pa.free = arena_free;
  u->pa.allocator_data = u;
  *out = u;
  return 0;
}

void ratchet_unpacker_free(ratchet_unpacker *u) {
  if (u == NULL)
    return;
  arena_reset(u);
  ratchet_free(u->base);
  ratchet_free(u);
}

int ratchet_unpacker_unpack(ratchet_unpacker *u, const void *body, size_t len,
                            const Ratchet__V1__Frame **out) {
  if (out != NULL)
    *out = NULL;
  if (u == NULL || out == NULL || (body == NULL && len > 0))
    return -EINVAL;
  arena_reset(u);
  static const uint8_t empty[1];
  Ratchet__V1__Frame *f =
      ratchet__v1__frame__unpack(&u->pa, len, len > 0 ? body : empty);
  if (f == NULL)
    return u->oom ? -ENOMEM : RATCHET_EFRAME_UNDECODABLE;
  /* The same post-parse checks as ratchet_codec_unpack, so that a frame the
   * codec refuses (an empty oneof; a field number protobuf forbids) is
   * refused on this path too. The arena keeps f's memory; nothing to free. */
  int rc = ratchet_codec_check_frame(f);
  if (rc != 0)
    return rc;
  *out = f;
  return 0;
}

/* ---- fd transport ----------------------------------------------------- */

struct ratchet_fd_transport {
  int in_fd;
  int out_fd;
  int out_is_socket; /* write with send(MSG_NOSIGNAL) */
  int block_sigpipe; /* write(2) with SIGPIPE blocked and consumed */
  size_t max;        /* limit of sent frames, 0 for the default */
  int rerr;          /* sticky read-side error, 0 if none */
  int werr;          /* sticky write-side error, 0 if none */
  ratchet_frame_decoder *dec;
  ratchet_unpacker *unpacker;
  const Ratchet__V1__Frame *got; /* set by on_body */
  uint8_t *rbuf;                 /* RATCHET__READ_BUF bytes */
  size_t rpos; /* rbuf[rpos, rlen) is read but not yet decoded */
  size_t rlen;
  ratchet_buf wbuf; /* the frame being sent */
  ratchet__trim wtrim;
};

int ratchet_fd_transport_new(int in_fd, int out_fd,
                             const ratchet_fd_transport_options *o,
                             ratchet_fd_transport **out) {
  static const ratchet_fd_transport_options defaults =
      RATCHET_FD_TRANSPORT_OPTIONS_INIT;
  if (o == NULL)
    o = &defaults;
  if (out == NULL || in_fd < -1 || out_fd < -1 || (in_fd < 0 && out_fd < 0) ||
      o->max_frame_size > SIZE_MAX / 2)
    return -EINVAL;
  ratchet_fd_transport *t = ratchet_calloc(1, sizeof *t);
  if (t == NULL)
    return -ENOMEM;
  t->in_fd = in_fd;
  t->out_fd = out_fd;
  t->max = o->max_frame_size;
  int rc = -ENOMEM;
  if (in_fd >= 0) {
    if ((rc = ratchet_frame_decoder_new(o->max_frame_size, &t->dec)) < 0 ||
        (rc = ratchet_unpacker_new(&t->unpacker)) < 0)
      goto fail;
    if ((t->rbuf = ratchet_malloc(RATCHET__READ_BUF)) == NULL) {
      rc = -ENOMEM;
      goto fail;
    }
  }
  if (out_fd >= 0) {
    struct stat st;
    t->out_is_socket = fstat(out_fd, &st) == 0 && S_ISSOCK(st.st_mode);
    if (!t->out_is_socket && !o->allow_sigpipe) {
      struct sigaction sa;
      t->block_sigpipe =
          sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_IGN;
    }
  }
  *out = t;
  return 0;
fail:
  ratchet_fd_transport_free(t);
  return rc;
}

void ratchet_fd_transport_free(ratchet_fd_transport *t) {
  if (t == NULL)
    return;
  ratchet_frame_decoder_free(t->dec);
  ratchet_unpacker_free(t->unpacker);
  ratchet_free(t->rbuf);
  ratchet_buf_free(&t->wbuf);
  ratchet_free(t);
}

/* Waits until fd is ready for events; a hang-up or error counts as ready
 * (the next read or write reports it). */
static int wait_fd(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events, .revents = 0};
  for (;;) {
    int n = poll(&p, 1, -1);
    if (n >= 0)
      return (p.revents & POLLNVAL) ? -EBADF : 0;
    if (errno != EINTR && errno != EAGAIN)
      return -errno;
  }
}

/* Blocks SIGPIPE in this thread. *was_pending says whether one was already
 * pending (possible only if it was blocked before), so that we never
 * swallow a SIGPIPE that is not ours. */
static void sigpipe_block(sigset_t *old, int *was_pending) {
  sigset_t pipe_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, old);
  *was_pending = 0;
  if (sigismember(old, SIGPIPE) == 1 && sigpending(&pending) == 0)
    *was_pending = sigismember(&pending, SIGPIPE) == 1;
}

/* Consumes the SIGPIPE our write raised, if any, and restores the mask. */
static void sigpipe_restore(const sigset_t *old, int was_pending,
                            int got_epipe) {
  if (got_epipe && !was_pending) {
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      static const struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
        ;
    }
  }
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Writes all n bytes of p to the out fd. */
static int write_all(ratchet_fd_transport *t, const uint8_t *p, size_t n) {
  sigset_t old;
  int was_pending = 0, rc = 0;
  if (t->block_sigpipe)
    sigpipe_block(&old, &was_pending);
  while (n > 0) {
    ssize_t w = t->out_is_socket ? send(t->out_fd, p, n, MSG_NOSIGNAL)
                                 : write(t->out_fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w == 0) {
      rc = -EIO; /* no progress and no error: do not spin */
      break;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if ((rc = wait_fd(t->out_fd, POLLOUT)) < 0)
        break;
    } else if (errno != EINTR) {
      rc = -errno;
      break;
    }
  }
  if (t->block_sigpipe)
    sigpipe_restore(&old, was_pending, rc == -EPIPE);
  return rc;
}

/* Writes wbuf, holding one encoded frame, and keeps or trims its memory. */
static int flush_wbuf(ratchet_fd_transport *t) {
  size_t len = t->wbuf.len;
  int rc = write_all(t, t->wbuf.data, len);
  if (rc < 0)
    t->werr = rc;
  ratchet_buf_reset(&t->wbuf);
  ratchet__buf_trim(&t->wbuf, &t->wtrim, len);
  return rc;
}

/* What both sends check before encoding: 0, or why nothing can be sent. On
 * 0 the write buffer is empty and ready for one frame. */
static int send_begin(ratchet_fd_transport *t) {
  if (t == NULL)
    return -EINVAL;
  if (t->out_fd < 0)
    return -EBADF;
  if (t->werr != 0)
    return t->werr;
  ratchet_buf_reset(&t->wbuf);
  return 0;
}

int ratchet_fd_transport_send(ratchet_fd_transport *t,
                              const Ratchet__V1__Frame *frame) {
  int rc = send_begin(t);
  if (rc == 0)
    rc = ratchet_codec_encode(&t->wbuf, frame, t->max);
  return rc < 0 ? rc : flush_wbuf(t);
}

int ratchet_fd_transport_send_error(ratchet_fd_transport *t, int err,
                                    const char *text) {
  int rc = send_begin(t);
  if (rc == 0)
    rc = ratchet_codec_encode_error(&t->wbuf, err, text, t->max);
  return rc < 0 ? rc : flush_wbuf(t);
}

int ratchet_fd_transport_set_send_limit(ratchet_fd_transport *t, size_t limit) {
  if (t == NULL || limit > SIZE_MAX / 2)
    return -EINVAL;
  t->max = limit;
  return 0;
}

/* The decoder's callback: unpacks the frame and stops the feed there. */
static int on_body(void *ctx, const uint8_t *body, size_t len) {
  ratchet_fd_transport *t = ctx;
  int rc = ratchet_unpacker_unpack(t->unpacker, body, len, &t->got);
  return rc < 0 ? rc : RATCHET__STOP;
}

/* Fails the read side with err for good. tell_peer: err is the peer's fault
 * or leaves the stream out of step (a framing or decoding error, a frame we
 * could not hold), so the peer gets an Error frame first; not for a clean
 * EOF or an error of read(2) itself. */
static int fail_read(ratchet_fd_transport *t, int err, int tell_peer) {
  t->rerr = err;
  if (tell_peer && t->out_fd >= 0)
    (void)ratchet_fd_transport_send_error(t, err, NULL);
  return err;
}

int ratchet_fd_transport_recv(ratchet_fd_transport *t,
                              const Ratchet__V1__Frame **frame) {
  if (frame != NULL)
    *frame = NULL;
  if (t == NULL || frame == NULL)
    return -EINVAL;
  if (t->in_fd < 0)
    return -EBADF;
  for (;;) {
    if (t->rerr != 0)
      return t->rerr;
    if (t->rpos < t->rlen) {
      size_t used = 0;
      t->got = NULL;
      int rc = ratchet_frame_decoder_feed(t->dec, t->rbuf + t->rpos,
                                          t->rlen - t->rpos, on_body, t, &used);
      t->rpos += used;
      if (rc == RATCHET__STOP) {
        *frame = t->got;
        return 0;
      }
      if (rc < 0)
        return fail_read(t, rc, 1);
    }
    ssize_t n = read(t->in_fd, t->rbuf, RATCHET__READ_BUF);
    if (n > 0) {
      t->rpos = 0;
      t->rlen = (size_t)n;
    } else if (n == 0) {
      int rc = ratchet_frame_decoder_finish(t->dec);
      return rc == 0 ? fail_read(t, RATCHET_EEOF, 0) : fail_read(t, rc, 1);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int rc = wait_fd(t->in_fd, POLLIN);
      if (rc < 0)
        return fail_read(t, rc, 0);
    } else if (errno != EINTR) {
      return fail_read(t, -errno, 0);
    }
  }
}
