/*
 * uv_transport.c - ratchet frames over libuv streams, for the orchestrator's
 * side: non-blocking, single-threaded, driven by the loop.
 *
 * Reading: libuv reads into one 64 KiB buffer of the transport; the bytes go
 * straight to the incremental decoder, whose callback unpacks each frame
 * with the transport's unpacker (no allocation once warm) and hands it to
 * on_frame. When the owner stops reading inside on_frame, the feed stops
 * after that frame and the rest of the buffer is kept; read_start later
 * delivers it from an idle handle, so on_frame never runs inside a call of
 * the owner's, and only then goes back to the stream. On a framing or
 * decoding error the transport queues an Error frame for the peer, stops
 * reading, refuses further sends and reports the error through on_end, once.
 *
 * Writing: two batches, each a uv_write_t and a buffer kept across writes.
 * A send encodes its frame at the end of the gathering batch; if no write is
 * in progress the batch is written at once (libuv tries the write(2) there
 * and then), otherwise it waits for the write in progress to complete and
 * then leaves as one write. So a burst of frames costs a few system calls,
 * not one each, and the first frame of a quiet period goes out with no
 * delay. The queue the watermarks are measured on is what libuv still holds
 * of the batch in flight plus the gathering batch.
 *
 * Closing closes the idle handle and both streams; the transport is freed,
 * and the owner's callback runs, when the last of them has closed. libuv
 * completes writes still pending with UV_ECANCELED before that. Just
 * before, if libuv has nothing unwritten, the gathering batch gets one
 * uv_try_write: an Error frame queued while an earlier write's callback was
 * still due then reaches the peer.
 */
#define _POSIX_C_SOURCE 200809L /* <uv.h> needs POSIX types */

#include <errno.h>
#include <stdint.h>

#include <uv.h>

#include "ratchet/alloc.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/frame.h"
#include "ratchet/transport.h"
#include "transport_private.h"

/* One write: the request must stay alive until its callback, the buffer
 * until then too. req comes first so that a uv_write_t * is a batch *. */
typedef struct batch {
  uv_write_t req;
  ratchet_buf buf;
  ratchet__trim trim;
} batch;

struct ratchet_uv_transport {
  uv_stream_t *in;
  uv_stream_t *out;
  uv_idle_t idle; /* delivers frames read before a read_stop */
  ratchet_uv_transport_callbacks cb;
  void *data;
  size_t max; /* limit of sent frames, 0 for the default */
  size_t high;
  size_t low;
  ratchet_frame_decoder *dec;
  ratchet_unpacker *unpacker;
  uint8_t *rbuf;       /* RATCHET__READ_BUF bytes, libuv reads into it */
  const uint8_t *left; /* left[0, left_len): in rbuf, not yet decoded */
  size_t left_len;
  batch w[2];
  int pend;        /* index of the gathering batch; the other is in flight */
  int writing;     /* a uv_write is in progress */
  int werr;        /* sticky write error, 0 if none */
  int send_closed; /* an Error frame was queued, or closing: no more sends */
  int reading;     /* the owner wants frames (read_start/read_stop) */
  int uv_reading;  /* uv_read_start is in force */
  int ended;       /* on_end has been called */
  int closing;
  int congested;
  int closes; /* handles whose close callback is still due */
  ratchet_uv_close_cb close_cb;
};

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void idle_cb(uv_idle_t *h);

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  ratchet_uv_transport *t = h->data;
  (void)hint;
  buf->base = (char *)t->rbuf;
  buf->len = RATCHET__READ_BUF;
}

/* Makes libuv's reading, and the idle handle, match what the owner wants:
 * leftover bytes are delivered first, from the idle handle; the stream is
 * read only when there are none, so that libuv never reads into rbuf while
 * it holds undelivered bytes. */
static int sync_reading(ratchet_uv_transport *t) {
  int want = t->reading && !t->ended && !t->closing;
  if (want && t->left_len > 0) {
    if (t->uv_reading) {
      uv_read_stop(t->in);
      t->uv_reading = 0;
    }
    return uv_idle_start(&t->idle, idle_cb);
  }
  uv_idle_stop(&t->idle);
  if (want && !t->uv_reading) {
    int rc = uv_read_start(t->in, alloc_cb, read_cb);
    if (rc < 0)
      return rc;
    t->uv_reading = 1;
  } else if (!want && t->uv_reading) {
    uv_read_stop(t->in);
    t->uv_reading = 0;
  }
  return 0;
}

/* Reports the end of the stream, once, and stops reading. */
static void end(ratchet_uv_transport *t, int err) {
  if (t->ended || t->closing)
    return;
  t->ended = 1;
  (void)sync_reading(t);
  t->cb.on_end(t, err);
}

int ratchet_uv_transport_set_send_limit(ratchet_uv_transport *t, size_t limit) {
  if (t == NULL || limit > SIZE_MAX / 2)
    return -EINVAL;
  t->max = limit;
  return 0;
}

size_t ratchet_uv_transport_queued(const ratchet_uv_transport *t) {
  return t->out->write_queue_size + t->w[t->pend].buf.len;
}

bool ratchet_uv_transport_congested(const ratchet_uv_transport *t) {
  return t->congested != 0;
}

bool ratchet_uv_transport_writable(const ratchet_uv_transport *t) {
  return !t->send_closed && t->werr == 0;
}

void *ratchet_uv_transport_data(const ratchet_uv_transport *t) {
  return t->data;
}

static void write_cb(uv_write_t *req, int status);

/* Starts writing the gathering batch, if it holds anything. */
static int flush(ratchet_uv_transport *t) {
  batch *b = &t->w[t->pend];
  if (b->buf.len == 0)
    return 0;
  uv_buf_t ub = {.base = (char *)b->buf.data, .len = b->buf.len};
  b->req.data = t;
  int rc = uv_write(&b->req, t->out, &ub, 1, write_cb);
  if (rc < 0)
    return rc;
  t->writing = 1;
  t->pend ^= 1;
  return 0;
}

/* A write could not be started or failed: the stream is out of step, so
 * what is gathered is dropped and every later send fails with err. */
static void fail_write(ratchet_uv_transport *t, int err) {
  if (t->werr == 0)
    t->werr = err;
  ratchet_buf_reset(&t->w[t->pend].buf);
  t->congested = 0;
}

static void write_cb(uv_write_t *req, int status) {
  batch *b = (batch *)req;
  ratchet_uv_transport *t = req->data;
  size_t len = b->buf.len;
  ratchet_buf_reset(&b->buf);
  ratchet__buf_trim(&b->buf, &b->trim, len);
  t->writing = 0;
  if (t->closing)
    return;
  if (status < 0) {
    fail_write(t, status);
    return;
  }
  if (t->werr == 0) {
    int rc = flush(t);
    if (rc < 0)
      fail_write(t, rc);
  }
  if (t->congested && ratchet_uv_transport_queued(t) <= t->low) {
    t->congested = 0;
    if (t->cb.on_drain != NULL)
      t->cb.on_drain(t);
  }
}

/* Appends what encode() produces to the gathering batch and starts writing
 * if nothing is in flight. encode leaves the buffer unchanged on failure. */
static int queue(ratchet_uv_transport *t, const Ratchet__V1__Frame *frame,
                 int err, const char *text) {
  ratchet_buf *buf = &t->w[t->pend].buf;
  int rc = frame != NULL ? ratchet_codec_encode(buf, frame, t->max)
                         : ratchet_codec_encode_error(buf, err, text, t->max);
  if (rc < 0)
    return rc;
  if (!t->writing && (rc = flush(t)) < 0) {
    fail_write(t, rc);
    return rc;
  }
  if (ratchet_uv_transport_queued(t) >= t->high)
    t->congested = 1;
  return t->congested ? RATCHET_UV_BACKPRESSURE : 0;
}

int ratchet_uv_transport_send(ratchet_uv_transport *t,
                              const Ratchet__V1__Frame *frame) {
  if (t == NULL)
    return -EINVAL;
  if (t->send_closed)
    return -EPIPE;
  if (t->werr != 0)
    return t->werr;
  return queue(t, frame, 0, NULL);
}

int ratchet_uv_transport_send_error(ratchet_uv_transport *t, int err,
                                    const char *text) {
  if (t == NULL)
    return -EINVAL;
  if (t->send_closed)
    return -EPIPE;
  if (t->werr != 0)
    return t->werr;
  int rc = queue(t, NULL, err, text);
  if (rc < 0)
    return rc;
  t->send_closed = 1;
  return 0;
}

/* A framing or decoding error: tell the peer, then end. */
static void fail(ratchet_uv_transport *t, int err) {
  if (!t->send_closed && t->werr == 0)
    (void)queue(t, NULL, err, NULL);
  t->send_closed = 1;
  end(t, err);
}

/* The decoder's callback. Goes on to the next frame only while the owner
 * still wants frames and the transport is neither ended nor closing. */
static int on_body(void *ctx, const uint8_t *body, size_t len) {
  ratchet_uv_transport *t = ctx;
  const Ratchet__V1__Frame *f;
  int rc = ratchet_unpacker_unpack(t->unpacker, body, len, &f);
  if (rc < 0)
    return rc;
  t->cb.on_frame(t, f);
  if (t->closing || t->ended)
    return RATCHET__STOP;
  if (f->msg_case == RATCHET__V1__FRAME__MSG_ERROR) {
    end(t, RATCHET_EPEER);
    return RATCHET__STOP;
  }
  return t->reading ? 0 : RATCHET__STOP;
}

/* Decodes and delivers n bytes of rbuf. */
static void deliver(ratchet_uv_transport *t, const uint8_t *p, size_t n) {
  size_t used = 0;
  int rc = ratchet_frame_decoder_feed(t->dec, p, n, on_body, t, &used);
  if (rc == 0 || t->closing || t->ended)
    return;
  if (rc == RATCHET__STOP) {
    /* The owner stopped reading: keep the rest for read_start. */
    t->left = p + used;
    t->left_len = n - used;
    return;
  }
  fail(t, rc);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ratchet_uv_transport *t = s->data;
  (void)buf;
  if (nread > 0) {
    deliver(t, t->rbuf, (size_t)nread);
  } else if (nread == UV_EOF) {
    int rc = ratchet_frame_decoder_finish(t->dec);
    if (rc == 0)
      end(t, RATCHET_EEOF);
    else
      fail(t, rc);
  } else if (nread < 0) {
    end(t, (int)nread);
  }
}

static void idle_cb(uv_idle_t *h) {
  ratchet_uv_transport *t = h->data;
  const uint8_t *p = t->left;
  size_t n = t->left_len;
  t->left = NULL;
  t->left_len = 0;
  deliver(t, p, n);
  if (!t->closing && !t->ended)
    (void)sync_reading(t); /* back to the stream, or stopped again */
}

int ratchet_uv_transport_read_stop(ratchet_uv_transport *t) {
  if (t == NULL)
    return -EINVAL;
  t->reading = 0;
  return sync_reading(t);
}

int ratchet_uv_transport_read_start(ratchet_uv_transport *t) {
  if (t == NULL)
    return -EINVAL;
  if (t->ended || t->closing)
    return -EPIPE;
  if (t->reading)
    return 0;
  t->reading = 1;
  int rc = sync_reading(t);
  if (rc < 0)
    t->reading = 0;
  return rc;
}

static void free_transport(ratchet_uv_transport *t) {
  ratchet_frame_decoder_free(t->dec);
  ratchet_unpacker_free(t->unpacker);
  ratchet_free(t->rbuf);
  ratchet_buf_free(&t->w[0].buf);
  ratchet_buf_free(&t->w[1].buf);
  ratchet_free(t);
}

int ratchet_uv_transport_new(uv_stream_t *in, uv_stream_t *out,
                             const ratchet_uv_transport_options *o,
                             const ratchet_uv_transport_callbacks *cbs,
                             void *data, ratchet_uv_transport **out_t) {
  static const ratchet_uv_transport_options defaults =
      RATCHET_UV_TRANSPORT_OPTIONS_INIT;
  if (o == NULL)
    o = &defaults;
  if (in == NULL || out == NULL || cbs == NULL || cbs->on_frame == NULL ||
      cbs->on_end == NULL || out_t == NULL || in->loop != out->loop ||
      !uv_is_readable(in) || !uv_is_writable(out) ||
      uv_is_closing((uv_handle_t *)in) || uv_is_closing((uv_handle_t *)out) ||
      o->max_frame_size > SIZE_MAX / 2 || o->high_watermark == 0 ||
      o->low_watermark >= o->high_watermark)
    return -EINVAL;
  ratchet_uv_transport *t = ratchet_calloc(1, sizeof *t);
  if (t == NULL)
    return -ENOMEM;
  void *in_data, *out_data;
  int rc;
  if ((rc = ratchet_frame_decoder_new(o->max_frame_size, &t->dec)) < 0 ||
      (rc = ratchet_unpacker_new(&t->unpacker)) < 0)
    goto fail;
  if ((t->rbuf = ratchet_malloc(RATCHET__READ_BUF)) == NULL) {
    rc = -ENOMEM;
    goto fail;
  }
  t->in = in;
  t->out = out;
  t->cb = *cbs;
  t->data = data;
  t->max = o->max_frame_size;
  t->high = o->high_watermark;
  t->low = o->low_watermark;
  in_data = in->data;
  out_data = out->data;
  in->data = t;
  out->data = t;
  if ((rc = uv_read_start(in, alloc_cb, read_cb)) < 0) {
    in->data = in_data;
    out->data = out_data;
    goto fail;
  }
  t->reading = 1;
  t->uv_reading = 1;
  uv_idle_init(in->loop, &t->idle); /* cannot fail: it only sets fields */
  t->idle.data = t;
  *out_t = t;
  return 0;
fail:
  free_transport(t);
  return rc;
}

static void on_closed(uv_handle_t *h) {
  ratchet_uv_transport *t = h->data;
  if (--t->closes > 0)
    return;
  ratchet_uv_close_cb cb = t->close_cb;
  void *data = t->data;
  free_transport(t);
  if (cb != NULL)
    cb(data);
}

void ratchet_uv_transport_close(ratchet_uv_transport *t,
                                ratchet_uv_close_cb cb) {
  if (t == NULL || t->closing)
    return;
  /* Frames gathered behind a write that has already reached the kernel
   * (typically the Error frame of a failure, queued just before the owner
   * closes) get one non-blocking attempt; libuv would drop them. */
  ratchet_buf *gathered = &t->w[t->pend].buf;
  if (t->werr == 0 && gathered->len > 0 && t->out->write_queue_size == 0) {
    uv_buf_t ub = {.base = (char *)gathered->data, .len = gathered->len};
    (void)uv_try_write(t->out, &ub, 1);
  }
  t->closing = 1;
  t->send_closed = 1;
  t->close_cb = cb;
  (void)sync_reading(t);
  t->closes = 1;
  uv_close((uv_handle_t *)&t->idle, on_closed);
  uv_handle_t *streams[2] = {(uv_handle_t *)t->in, (uv_handle_t *)t->out};
  for (int i = 0; i < (t->in == t->out ? 1 : 2); i++) {
    if (!uv_is_closing(streams[i])) {
      streams[i]->data = t;
      t->closes++;
      uv_close(streams[i], on_closed);
    }
  }
}
