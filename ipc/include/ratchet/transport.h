/*
 * ratchet/transport.h - moving ratchet.v1.Frame messages over byte streams.
 *
 * Two transports share the framing of ratchet/frame.h and the messages of
 * ratchet/codec.h:
 *
 * - ratchet_uv_transport runs on a libuv loop over streams the caller has
 *   set up (pipes, TCP, Unix sockets): frames arrive in a callback, sends
 *   are queued without blocking, the queue is watched with high and low
 *   watermarks, and the end of the stream is reported once. This is the
 *   orchestrator's side.
 * - ratchet_fd_transport reads and writes plain file descriptors with
 *   blocking calls, for worker processes that do not run libuv: recv waits
 *   for a whole frame, send writes a whole frame, both retry on EINTR and
 *   partial transfers.
 *
 * Both turn frame bodies into messages with a ratchet_unpacker, which keeps
 * its memory from one frame to the next: once it has seen the largest
 * frame, receiving allocates nothing. Both answer a framing or decoding
 * error by sending the peer an Error frame (best effort) and failing the
 * connection, as docs/protocol.md requires. docs/ipc.md is the guide.
 *
 * Threads: an object here belongs to one thread at a time; a uv transport
 * to its loop's thread. Different objects may be used from different
 * threads at once.
 */
#ifndef RATCHET_TRANSPORT_H
#define RATCHET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "ratchet/export.h"
#include "ratchet/ratchet.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- unpacker ---------------------------------------------------------- */

/*
 * Unpacks frame bodies into Ratchet__V1__Frame messages that live in memory
 * the unpacker owns and reuses (an arena reset at every unpack), instead of
 * one allocation per field as ratchet_codec_unpack does. The arena grows to
 * the largest frame seen and shrinks back after a run of 64 frames that
 * needed less than a quarter of it.
 */
typedef struct ratchet_unpacker ratchet_unpacker;

/* Creates an unpacker. 0 and *out set; -EINVAL (out NULL); -ENOMEM. */
RATCHET_API int ratchet_unpacker_new(ratchet_unpacker **out);

/* Frees u and the last frame it unpacked. NULL is a no-op. */
RATCHET_API void ratchet_unpacker_free(ratchet_unpacker *u);

/*
 * Unpacks one frame body (the bytes after the length prefix). Returns 0 and
 * sets *out to a frame borrowed until the next unpack on u or
 * ratchet_unpacker_free (it holds no pointer into body, which is borrowed
 * for the call only). Errors, as ratchet_codec_unpack's:
 * RATCHET_EFRAME_UNDECODABLE (not a Frame), RATCHET_EFRAME_EMPTY (no oneof
 * member this version knows), -ENOMEM, -EINVAL (u or out NULL, or body NULL
 * while len > 0); *out is then NULL. Either way the previous frame is gone.
 */
RATCHET_API int ratchet_unpacker_unpack(ratchet_unpacker *u, const void *body,
                                        size_t len,
                                        const Ratchet__V1__Frame **out);

/* ---- libuv stream transport ----------------------------------------- */

typedef struct ratchet_uv_transport ratchet_uv_transport;

/* libuv's uv_stream_t. Declared rather than included, so that a program
 * using only the fd transport needs no <uv.h> (which, under -std=c11, also
 * needs _POSIX_C_SOURCE); pass a uv_stream_t * as it is. */
struct uv_stream_s;

/*
 * max_frame_size: the largest frame body received or sent, in bytes;
 *   0 means RATCHET_FRAME_MAX_DEFAULT (64 MiB) [0].
 * high_watermark: once this many bytes are queued and not yet written,
 *   the transport is congested: ratchet_uv_transport_send returns
 *   RATCHET_UV_BACKPRESSURE [1 MiB; 1 .. SIZE_MAX].
 * low_watermark: a congested transport calls on_drain when the queue falls
 *   to this many bytes or fewer [256 KiB; 0 .. high_watermark - 1].
 */
typedef struct ratchet_uv_transport_options {
  size_t max_frame_size;
  size_t high_watermark;
  size_t low_watermark;
} ratchet_uv_transport_options;

#define RATCHET_UV_TRANSPORT_OPTIONS_INIT                                      \
  { .max_frame_size = 0, .high_watermark = 1 << 20, .low_watermark = 1 << 18 }

/* Returned by ratchet_uv_transport_send: the frame was queued, and the
 * queue is at or above the high watermark. Not an error. */
#define RATCHET_UV_BACKPRESSURE 1

/* A frame arrived. frame is borrowed until the callback returns. The
 * callback may call any function of this header on t, close included. */
typedef void (*ratchet_uv_frame_cb)(ratchet_uv_transport *t,
                                    const Ratchet__V1__Frame *frame);

/*
 * The transport has stopped reading for good; err says why:
 *   RATCHET_EEOF               the peer closed the stream between frames;
 *   RATCHET_EFRAME_TRUNCATED   ... in the middle of a frame;
 *   RATCHET_EFRAME_VARINT, RATCHET_EFRAME_TOO_BIG,
 *   RATCHET_EFRAME_UNDECODABLE, RATCHET_EFRAME_EMPTY
 *                              the peer sent a bad frame;
 *   RATCHET_EPEER              the peer sent an Error frame (on_frame had it);
 *   -ENOMEM                    a frame could not be held or unpacked;
 *   a negative errno           reading failed (-ECONNRESET, ...).
 * For the framing and decoding errors, -ENOMEM and RATCHET_EFRAME_TRUNCATED
 * the transport has already queued an Error frame for the peer, and refuses
 * further sends. Called once, from the loop, never after close; the owner
 * normally closes the transport here.
 */
typedef void (*ratchet_uv_end_cb)(ratchet_uv_transport *t, int err);

/* The queue fell to the low watermark after the transport was congested. */
typedef void (*ratchet_uv_drain_cb)(ratchet_uv_transport *t);

/* The transport is closed and freed; its streams are closed too. data is
 * the pointer given to ratchet_uv_transport_new. */
typedef void (*ratchet_uv_close_cb)(void *data);

/* on_frame and on_end are required, on_drain may be NULL. */
typedef struct ratchet_uv_transport_callbacks {
  ratchet_uv_frame_cb on_frame;
  ratchet_uv_end_cb on_end;
  ratchet_uv_drain_cb on_drain;
} ratchet_uv_transport_callbacks;

/*
 * Creates a transport that reads frames from `in` and writes them to `out`:
 * two pipes (a worker's stdout and stdin), or the same stream twice (a
 * socket). Both streams must be initialised and open, on the same loop. The
 * transport starts reading at once; callbacks come from the loop, never
 * from inside a function of this header.
 *
 * Ownership: the streams stay in the caller's memory, but from here on the
 * transport uses them and their `data` fields (do not touch either) and
 * closes them in ratchet_uv_transport_close; free their memory in the close
 * callback, not before. o (NULL for the defaults) and cbs are copied; data
 * is handed back by ratchet_uv_transport_data and to the close callback.
 *
 * Returns 0 and sets *out; -EINVAL (a NULL argument, streams on different
 * loops, an option out of range); -ENOMEM; or uv_read_start's error. On
 * failure nothing is allocated and the streams are left as they were.
 */
RATCHET_API int
ratchet_uv_transport_new(struct uv_stream_s *in, struct uv_stream_s *out,
                         const ratchet_uv_transport_options *o,
                         const ratchet_uv_transport_callbacks *cbs, void *data,
                         ratchet_uv_transport **out_t);

/*
 * Encodes frame and queues it. The bytes go out in order; frames sent in
 * one turn of the loop leave in one write. frame is borrowed for the call.
 *
 * Returns 0 when queued; RATCHET_UV_BACKPRESSURE when queued and the queue
 * is at or above the high watermark (the owner should stop sending until
 * on_drain; the transport itself never refuses a frame for being late);
 * or an error, with nothing queued: RATCHET_EFRAME_TOO_BIG,
 * RATCHET_EFRAME_EMPTY, -EINVAL (see ratchet_codec_encode; the transport
 * stays usable); -ENOMEM; -EPIPE after the transport has sent an Error
 * frame or began closing; or the error a previous write failed with
 * (-EPIPE, -ECONNRESET, ...), which stays.
 *
 * A failed write does not end the transport by itself: frames the peer
 * sent before it went away may still be waiting to be read, and on_end
 * comes when they have been.
 */
RATCHET_API int ratchet_uv_transport_send(ratchet_uv_transport *t,
                                          const Ratchet__V1__Frame *frame);

/*
 * Queues an Error frame for err (see ratchet_codec_encode_error; text may be
 * NULL) and refuses later sends with -EPIPE: the protocol says the sender
 * closes next. Reading goes on until the owner closes. Returns 0, -EPIPE if
 * sending is already over, or an encoding error.
 */
RATCHET_API int ratchet_uv_transport_send_error(ratchet_uv_transport *t,
                                                int err, const char *text);

/*
 * Sets the largest frame body send accepts from now on (0: the default,
 * 64 MiB), typically to what the peer announced in the handshake:
 * ratchet_codec_frame_limit(ready->max_frame_size). Receiving keeps the
 * limit of the options. Returns 0, or -EINVAL if limit > SIZE_MAX / 2.
 */
RATCHET_API int ratchet_uv_transport_set_send_limit(ratchet_uv_transport *t,
                                                    size_t limit);

/* Bytes queued and not yet written to the stream. */
RATCHET_API size_t ratchet_uv_transport_queued(const ratchet_uv_transport *t);

/* True from the send that reached the high watermark until on_drain. */
RATCHET_API bool ratchet_uv_transport_congested(const ratchet_uv_transport *t);

/* False once a send can no longer succeed: a write failed (even one whose
 * failure the loop reported after send returned 0), an Error frame was
 * queued, or the transport is closing. Owners that pick among several
 * transports use it to skip a dying peer. */
RATCHET_API bool ratchet_uv_transport_writable(const ratchet_uv_transport *t);

/*
 * Stops delivering frames until ratchet_uv_transport_read_start, for flow
 * control: no on_frame comes after read_stop returns (not even for frames
 * already read), and the peer is held back by the stream's own buffers.
 * Both are idempotent and return 0; read_start returns -EPIPE after on_end
 * or close, or uv_read_start's error. Frames read before the stop are
 * delivered from the loop after read_start, never inside it.
 */
RATCHET_API int ratchet_uv_transport_read_stop(ratchet_uv_transport *t);
RATCHET_API int ratchet_uv_transport_read_start(ratchet_uv_transport *t);

/* The data pointer given to ratchet_uv_transport_new. */
RATCHET_API void *ratchet_uv_transport_data(const ratchet_uv_transport *t);

/*
 * Closes the transport: stops reading, closes the streams (uv_close) and
 * frees the transport. What is still queued is dropped, after one attempt
 * to write it that never blocks: when the stream has room, frames queued
 * just before (an Error frame after a failure, say) still reach the peer,
 * possibly the last of them only in part. To be sure everything goes out,
 * wait until ratchet_uv_transport_queued is 0 (on_drain helps) first.
 * No callback but cb comes after this. cb (may be NULL) runs from the loop
 * once everything is closed; the streams' memory may be freed then.
 * Calling close twice is a bug; the second call is ignored.
 */
RATCHET_API void ratchet_uv_transport_close(ratchet_uv_transport *t,
                                            ratchet_uv_close_cb cb);

/* ---- blocking fd transport ------------------------------------------ */

typedef struct ratchet_fd_transport ratchet_fd_transport;

/*
 * max_frame_size: as for the uv transport [0: RATCHET_FRAME_MAX_DEFAULT].
 * allow_sigpipe: what a write to a pipe whose reader is gone does. false
 *   [default]: send returns -EPIPE and no SIGPIPE is delivered; the
 *   transport blocks SIGPIPE in the calling thread around each send and
 *   takes back the one its write raised, leaving the process's disposition
 *   and other pending signals alone. That costs two system calls per send,
 *   and none when SIGPIPE is ignored at ratchet_fd_transport_new - which
 *   is why a program should ignore it (signal(SIGPIPE, SIG_IGN)) if it can.
 *   true: plain write(2); the process's disposition applies (by default
 *   SIGPIPE kills the process, which may suit a worker whose orchestrator
 *   is gone). Sockets are always written with MSG_NOSIGNAL.
 */
typedef struct ratchet_fd_transport_options {
  size_t max_frame_size;
  bool allow_sigpipe;
} ratchet_fd_transport_options;

#define RATCHET_FD_TRANSPORT_OPTIONS_INIT                                      \
  { .max_frame_size = 0, .allow_sigpipe = false }

/*
 * Creates a transport that reads frames from in_fd and writes them to
 * out_fd (the same descriptor for a socket; -1 for a direction not used).
 * The descriptors stay the caller's: the transport never closes them. They
 * may be blocking or not (the transport waits with poll(2) on EAGAIN).
 * o may be NULL for the defaults; it is copied.
 * Returns 0 and sets *out; -EINVAL (both fds -1, out NULL); -ENOMEM.
 */
RATCHET_API int ratchet_fd_transport_new(int in_fd, int out_fd,
                                         const ratchet_fd_transport_options *o,
                                         ratchet_fd_transport **out);

/* Frees t, and the last frame received. Closes nothing. NULL is a no-op. */
RATCHET_API void ratchet_fd_transport_free(ratchet_fd_transport *t);

/*
 * Blocks until a whole frame has been read, retrying on EINTR, partial
 * reads and EAGAIN. Returns 0 and sets *frame, borrowed until the next recv
 * or ratchet_fd_transport_free; an Error frame from the peer is returned
 * like any other. Otherwise *frame is NULL and:
 *   RATCHET_EEOF               the stream ended between frames;
 *   RATCHET_EFRAME_TRUNCATED   the stream ended inside a frame;
 *   RATCHET_EFRAME_VARINT, RATCHET_EFRAME_TOO_BIG,
 *   RATCHET_EFRAME_UNDECODABLE, RATCHET_EFRAME_EMPTY
 *                              the peer sent a bad frame;
 *   -ENOMEM; -EBADF (no in_fd); a negated errno from read(2) or poll(2).
 * Before returning a framing or decoding error, -ENOMEM or
 * RATCHET_EFRAME_TRUNCATED, recv sends the peer an Error frame (best
 * effort; this write may block like any send). Every error is final: later
 * calls return it again.
 */
RATCHET_API int ratchet_fd_transport_recv(ratchet_fd_transport *t,
                                          const Ratchet__V1__Frame **frame);

/*
 * Encodes frame and writes all of it, retrying on EINTR, partial writes and
 * EAGAIN; blocks while the peer does not read. frame is borrowed for the
 * call (it may be the frame recv returned, or point into it). Returns 0;
 * RATCHET_EFRAME_TOO_BIG, RATCHET_EFRAME_EMPTY, -EINVAL or -ENOMEM when it
 * cannot be encoded (nothing written; the transport stays usable); -EBADF
 * (no out_fd); -EPIPE when the reader is gone; another negated errno from
 * write(2). A write error is final: later sends return it again, since the
 * stream may hold part of a frame.
 */
RATCHET_API int ratchet_fd_transport_send(ratchet_fd_transport *t,
                                          const Ratchet__V1__Frame *frame);

/*
 * Sends the Error frame for err (see ratchet_codec_encode_error; text may be
 * NULL), as a side does just before it closes. Same returns as send.
 */
RATCHET_API int ratchet_fd_transport_send_error(ratchet_fd_transport *t,
                                                int err, const char *text);

/* As ratchet_uv_transport_set_send_limit: a worker adopts the limit of the
 * orchestrator's Hello. 0, or -EINVAL if limit > SIZE_MAX / 2. */
RATCHET_API int ratchet_fd_transport_set_send_limit(ratchet_fd_transport *t,
                                                    size_t limit);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_TRANSPORT_H */
