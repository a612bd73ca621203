/*
 * frame.c - protobuf's delimited framing: a growing buffer, the varint
 * length prefix, the encoder and the incremental decoder.
 *
 * The decoder is a small state machine: either it is reading a length
 * prefix (the varint so far, kept as a running value and a byte count)
 * or a body (its length and the bytes held so far). feed() walks the slice
 * it is given. When the decoder is between frames and a whole frame lies in
 * the slice, the callback gets a pointer into the caller's bytes and nothing
 * is copied; that is the common case when reads are large and frames small.
 * Only a frame split across feeds is copied into the decoder's own body
 * buffer, which is grown as bytes arrive (never to the announced length up
 * front, so a peer cannot make us reserve 64 MiB by sending a 4-byte
 * prefix), kept across frames, and shrunk back after a run of frames much
 * smaller than it.
 *
 * A prefix is checked before anything is allocated: more than 10 bytes, or a
 * tenth byte carrying bits above 2^64, is RATCHET_EFRAME_VARINT; a length
 * over the limit is RATCHET_EFRAME_TOO_BIG as soon as the prefix ends.
 * Overlong but bounded prefixes (0x80 0x00 for 0) are accepted, as every
 * protobuf parser accepts them. Errors are sticky: the stream is out of
 * step and the connection has to be closed.
 *
 * The decoder's state is settled before each callback (between frames, the
 * body already handed out), so a callback may stop the feed by returning a
 * negative value; it must not feed or free the decoder itself, since feed
 * still touches it after the callback returns.
 */
#include <errno.h>
#include <string.h>

#include "ratchet/alloc.h"
#include "ratchet/error.h"
#include "ratchet/frame.h"

/* The smallest buffer ratchet_buf_reserve allocates, to avoid a string of
 * tiny reallocations for the first frames. */
#define BUF_MIN_CAP 64

/* The body buffer the decoder keeps between frames. After SHRINK_WINDOW
 * frames that all fit in a quarter of a larger buffer, it is shrunk to
 * max(KEEP_CAP, the largest of them), so one huge frame does not pin its
 * memory for the life of the connection, while a steady stream of large
 * frames keeps its buffer and does not reallocate every time. */
#define KEEP_CAP      ((size_t)64 << 10)
#define SHRINK_WINDOW 64

struct ratchet_frame_decoder {
  size_t max;       /* the largest body accepted */
  int error;        /* sticky framing error, 0 if none */
  int in_body;      /* 0: reading the prefix, 1: reading a body */
  unsigned npfx;    /* prefix bytes taken so far */
  uint64_t value;   /* prefix value accumulated so far */
  unsigned pfx_len; /* prefix length of the body in progress */
  size_t need;      /* body length, when in_body */
  size_t have;      /* body bytes held in body[] */
  uint8_t *body;    /* body buffer, cap bytes */
  size_t cap;
  size_t window_max; /* the largest copied body of the current window */
  unsigned window_n; /* frames delivered in the current window */
};

/* A non-NULL pointer for zero-length bodies delivered from the decoder's own
 * (possibly not yet allocated) buffer. */
static const uint8_t empty_body[1];

int ratchet_buf_reserve(ratchet_buf *buf, size_t extra) {
  if (extra <= buf->cap - buf->len)
    return 0;
  if (extra > SIZE_MAX - buf->len)
    return -ENOMEM;
  size_t want = buf->len + extra;
  size_t cap = buf->cap < BUF_MIN_CAP ? BUF_MIN_CAP : buf->cap;
  /* Double while it keeps the arithmetic in range; past that, take exactly
   * what is asked for. */
  while (cap < want)
    cap = cap <= SIZE_MAX / 2 ? cap * 2 : want;
  uint8_t *p = ratchet_realloc(buf->data, cap);
  if (p == NULL)
    return -ENOMEM;
  buf->data = p;
  buf->cap = cap;
  return 0;
}

int ratchet_buf_append(ratchet_buf *buf, const void *data, size_t len) {
  if (len == 0)
    return 0;
  int rc = ratchet_buf_reserve(buf, len);
  if (rc < 0)
    return rc;
  memcpy(buf->data + buf->len, data, len);
  buf->len += len;
  return 0;
}

void ratchet_buf_reset(ratchet_buf *buf) {
  buf->len = 0;
}

void ratchet_buf_free(ratchet_buf *buf) {
  ratchet_free(buf->data);
  buf->data = NULL;
  buf->len = 0;
  buf->cap = 0;
}

size_t ratchet_varint_encode(uint64_t v, uint8_t *out) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

static size_t effective_max(size_t max_frame_size) {
  return max_frame_size == 0 ? RATCHET_FRAME_MAX_DEFAULT : max_frame_size;
}

int ratchet_frame_write(const void *body, size_t len, size_t max_frame_size,
                        uint8_t *dst, size_t cap, size_t *written) {
  uint8_t pfx[RATCHET_FRAME_VARINT_MAX];
  if (len > effective_max(max_frame_size))
    return RATCHET_EFRAME_TOO_BIG;
  size_t npfx = ratchet_varint_encode(len, pfx);
  if (len > cap || npfx > cap - len) {
    *written = npfx + len;
    return -ENOBUFS;
  }
  memcpy(dst, pfx, npfx);
  if (len > 0)
    memcpy(dst + npfx, body, len);
  *written = npfx + len;
  return 0;
}

int ratchet_frame_append(ratchet_buf *buf, const void *body, size_t len,
                         size_t max_frame_size) {
  if (len > effective_max(max_frame_size))
    return RATCHET_EFRAME_TOO_BIG;
  /* len <= SIZE_MAX / 2 here unless the caller passed a huge limit; reserve
   * catches the overflow either way. */
  if (len > SIZE_MAX - RATCHET_FRAME_VARINT_MAX)
    return -ENOMEM;
  int rc = ratchet_buf_reserve(buf, RATCHET_FRAME_VARINT_MAX + len);
  if (rc < 0)
    return rc;
  size_t n = ratchet_varint_encode(len, buf->data + buf->len);
  if (len > 0)
    memcpy(buf->data + buf->len + n, body, len);
  buf->len += n + len;
  return 0;
}

int ratchet_frame_decoder_new(size_t max_frame_size,
                              ratchet_frame_decoder **out) {
  if (out == NULL || max_frame_size > SIZE_MAX / 2)
    return -EINVAL;
  ratchet_frame_decoder *d = ratchet_calloc(1, sizeof *d);
  if (d == NULL)
    return -ENOMEM;
  d->max = effective_max(max_frame_size);
  *out = d;
  return 0;
}

void ratchet_frame_decoder_free(ratchet_frame_decoder *d) {
  if (d == NULL)
    return;
  ratchet_free(d->body);
  ratchet_free(d);
}

/* Called once per delivered frame, with the length of the body if it went
 * through body[] (0 when it was handed out in place). Every SHRINK_WINDOW
 * frames, gives back a body buffer that was four times larger than anything
 * the window needed. A failed shrink keeps the old buffer, which is fine. */
static void track_window(ratchet_frame_decoder *d, size_t copied) {
  if (copied > d->window_max)
    d->window_max = copied;
  if (++d->window_n < SHRINK_WINDOW)
    return;
  if (d->cap > KEEP_CAP && d->window_max <= d->cap / 4) {
    size_t keep = d->window_max > KEEP_CAP ? d->window_max : KEEP_CAP;
    uint8_t *p = ratchet_realloc(d->body, keep);
    if (p != NULL) {
      d->body = p;
      d->cap = keep;
    }
  }
  d->window_n = 0;
  d->window_max = 0;
}

/* Grows body[] to hold at least `want` bytes (want <= d->need <= d->max),
 * doubling so that a frame arriving in many small reads costs a logarithmic
 * number of reallocations, but never past the frame's own length. */
static int grow_body(ratchet_frame_decoder *d, size_t want) {
  if (want <= d->cap)
    return 0;
  size_t cap = d->cap < BUF_MIN_CAP ? BUF_MIN_CAP : d->cap;
  while (cap < want)
    cap *= 2; /* cannot overflow: want <= max <= SIZE_MAX / 2 */
  if (cap > d->need)
    cap = d->need;
  uint8_t *p = ratchet_realloc(d->body, cap);
  if (p == NULL)
    return -ENOMEM;
  d->body = p;
  d->cap = cap;
  return 0;
}

/* A length prefix of npfx bytes has just ended with value v: checks it and
 * enters the body state. */
static int prefix_done(ratchet_frame_decoder *d, uint64_t v, unsigned npfx) {
  d->npfx = 0;
  d->value = 0;
  if (v > d->max)
    return RATCHET_EFRAME_TOO_BIG;
  d->in_body = 1;
  d->pfx_len = npfx;
  d->need = (size_t)v;
  d->have = 0;
  return 0;
}

/* Takes one prefix byte. Returns 1 when the prefix is complete, 0 when more
 * bytes are needed, or a framing error. */
static int prefix_byte(ratchet_frame_decoder *d, uint8_t b) {
  if (d->npfx == RATCHET_FRAME_VARINT_MAX - 1 && b > 1)
    return RATCHET_EFRAME_VARINT; /* bits past 2^64, or an 11th byte */
  d->value |= (uint64_t)(b & 0x7f) << (7 * d->npfx);
  d->npfx++;
  if (b & 0x80)
    return 0;
  int rc = prefix_done(d, d->value, d->npfx);
  return rc < 0 ? rc : 1;
}

/* Parses a whole varint at p (n bytes available). Returns its length in
 * bytes and sets *v, 0 if the bytes end before the varint does, or
 * RATCHET_EFRAME_VARINT. */
static int varint_parse(const uint8_t *p, size_t n, uint64_t *v) {
  uint64_t x = 0;
  size_t lim = n < RATCHET_FRAME_VARINT_MAX ? n : RATCHET_FRAME_VARINT_MAX;
  for (size_t i = 0; i < lim; i++) {
    if (i == RATCHET_FRAME_VARINT_MAX - 1 && p[i] > 1)
      return RATCHET_EFRAME_VARINT;
    x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if ((p[i] & 0x80) == 0) {
      *v = x;
      return (int)i + 1;
    }
  }
  return 0;
}

int ratchet_frame_decoder_feed(ratchet_frame_decoder *d, const void *data,
                               size_t len, ratchet_frame_cb cb, void *ctx,
                               size_t *consumed) {
  const uint8_t *p = data;
  const uint8_t *end = len > 0 ? p + len : p; /* NULL + 0 is undefined */
  int rc = d->error;
  while (rc == 0 && p < end) {
    if (!d->in_body) {
      uint64_t v;
      int n;
      /* Between frames, a prefix that lies wholly in the slice is read in
       * one go; a split one is taken byte by byte across feeds. */
      if (d->npfx == 0 && (n = varint_parse(p, (size_t)(end - p), &v)) != 0) {
        if (n < 0) {
          rc = d->error = n;
          break;
        }
        p += n;
        if ((rc = d->error = prefix_done(d, v, (unsigned)n)) < 0)
          break;
      } else {
        n = prefix_byte(d, *p++);
        if (n < 0) {
          rc = d->error = n;
          break;
        }
        if (n == 0)
          continue;
      }
    }
    /* In a body. If none of it is held yet and all of it is in the slice,
     * hand it out in place; otherwise gather it in body[]. */
    const uint8_t *body;
    size_t avail = (size_t)(end - p), blen = d->need, copied = 0;
    if (d->have == 0 && blen <= avail) {
      body = blen > 0 ? p : empty_body;
      p += blen;
    } else {
      if (avail == 0)
        break; /* a prefix ended the slice; the body comes later */
      size_t take = blen - d->have < avail ? blen - d->have : avail;
      if ((rc = grow_body(d, d->have + take)) < 0) {
        d->error = rc;
        break;
      }
      memcpy(d->body + d->have, p, take);
      d->have += take;
      p += take;
      if (d->have < blen)
        break; /* p == end: the rest comes with a later feed */
      body = d->body;
      copied = blen;
    }
    /* Leave the decoder between frames before the callback, so that a
     * callback stopping the feed leaves it ready for the next frame. */
    d->in_body = 0;
    d->need = 0;
    d->have = 0;
    d->pfx_len = 0;
    rc = cb(ctx, body, blen);
    if (rc > 0)
      rc = 0; /* only negative values stop */
    /* After the callback: a shrink must not free the bytes it was reading. */
    track_window(d, copied);
  }
  if (consumed != NULL)
    *consumed = len > 0 ? (size_t)(p - (const uint8_t *)data) : 0;
  return rc;
}

int ratchet_frame_decoder_finish(ratchet_frame_decoder *d) {
  if (d->error != 0)
    return d->error;
  if (d->in_body || d->npfx > 0)
    return RATCHET_EFRAME_TRUNCATED;
  return 0;
}

size_t ratchet_frame_decoder_pending(const ratchet_frame_decoder *d) {
  return d->in_body ? d->pfx_len + d->have : d->npfx;
}
