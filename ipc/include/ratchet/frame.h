/*
 * ratchet/frame.h - length-delimited framing of ratchet's wire protocol.
 *
 * On the wire every message is protobuf's "delimited" form: the message's
 * byte count as a base-128 varint, then the message bytes, so any protobuf
 * runtime can read and write ratchet streams (Java's writeDelimitedTo,
 * Python's _VarintBytes + SerializeToString, ...). This header is the byte
 * level: an incremental decoder (bytes in, whole frame bodies out) and an
 * encoder into a caller buffer or a growing buffer. ratchet/codec.h turns
 * bodies into ratchet.v1.Frame messages and back.
 *
 * The decoder never trusts a length: the varint is limited to 10 bytes and
 * its value to max_frame_size before anything is allocated, and a body is
 * handed out only once it is complete.
 */
#ifndef RATCHET_FRAME_H
#define RATCHET_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The default maximum frame size: 64 MiB. */
#define RATCHET_FRAME_MAX_DEFAULT ((size_t)64 << 20)
/* The longest varint length prefix, in bytes. */
#define RATCHET_FRAME_VARINT_MAX 10

/* A growing byte buffer that keeps its memory across frames (reset sets len
 * to 0). Transparent; initialise with RATCHET_BUF_INIT, free with
 * ratchet_buf_free. */
typedef struct ratchet_buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} ratchet_buf;

#define RATCHET_BUF_INIT                                                       \
  { NULL, 0, 0 }

/* Makes room for `extra` more bytes after len. 0 or -ENOMEM (buf unchanged). */
RATCHET_API int ratchet_buf_reserve(ratchet_buf *buf, size_t extra);
/* Appends len bytes. 0 or -ENOMEM (buf unchanged). */
RATCHET_API int ratchet_buf_append(ratchet_buf *buf, const void *data,
                                   size_t len);
/* Forgets the contents, keeps the memory. */
RATCHET_API void ratchet_buf_reset(ratchet_buf *buf);
/* Frees the memory and resets buf to RATCHET_BUF_INIT. */
RATCHET_API void ratchet_buf_free(ratchet_buf *buf);

/* Writes v as a varint into out (at least RATCHET_FRAME_VARINT_MAX bytes);
 * returns the number of bytes written (1 .. 10). */
RATCHET_API size_t ratchet_varint_encode(uint64_t v, uint8_t *out);

/* Writes a frame (length prefix + body) into dst of capacity cap. Returns 0
 * and sets *written, or -ENOBUFS if it does not fit (*written is then the
 * size needed), or RATCHET_EFRAME_TOO_BIG if len > max_frame_size. */
RATCHET_API int ratchet_frame_write(const void *body, size_t len,
                                    size_t max_frame_size, uint8_t *dst,
                                    size_t cap, size_t *written);

/* Appends a frame (length prefix + body) to buf. 0, -ENOMEM or
 * RATCHET_EFRAME_TOO_BIG; buf unchanged on failure. */
RATCHET_API int ratchet_frame_append(ratchet_buf *buf, const void *body,
                                     size_t len, size_t max_frame_size);

typedef struct ratchet_frame_decoder ratchet_frame_decoder;

/* Called for each whole frame body. The bytes are borrowed until the
 * callback returns. Return 0 to go on, or a negative value to stop: feed
 * then returns that value (the decoder stays usable; the bytes after this
 * frame have not been consumed - see ratchet_frame_decoder_feed). */
typedef int (*ratchet_frame_cb)(void *ctx, const uint8_t *body, size_t len);

/* Creates a decoder that refuses frames longer than max_frame_size bytes
 * (1 .. SIZE_MAX/2; 0 means RATCHET_FRAME_MAX_DEFAULT). 0, -EINVAL, -ENOMEM.
 */
RATCHET_API int ratchet_frame_decoder_new(size_t max_frame_size,
                                          ratchet_frame_decoder **out);

/* Frees d. NULL is a no-op. */
RATCHET_API void ratchet_frame_decoder_free(ratchet_frame_decoder *d);

/*
 * Feeds len bytes, split anywhere, and calls cb for every frame completed by
 * them, in order (zero-length frames included). Returns 0 when every byte was
 * taken. On a framing error returns RATCHET_EFRAME_VARINT (a prefix longer
 * than 10 bytes or over 64 bits) or RATCHET_EFRAME_TOO_BIG (a length over the
 * maximum, detected from the prefix alone, before any allocation); the
 * decoder is then failed and every later feed returns the same error. -ENOMEM
 * if a body buffer could not be allocated (failed too). If cb returns a
 * negative value, feed stops and returns it; *consumed (if not NULL) says how
 * many bytes of this call were taken, so the caller can feed the rest later.
 */
RATCHET_API int ratchet_frame_decoder_feed(ratchet_frame_decoder *d,
                                           const void *data, size_t len,
                                           ratchet_frame_cb cb, void *ctx,
                                           size_t *consumed);

/* At end of stream: 0 if the decoder is between frames, else
 * RATCHET_EFRAME_TRUNCATED (or the error it failed with). */
RATCHET_API int ratchet_frame_decoder_finish(ratchet_frame_decoder *d);

/* Bytes held for the frame in progress (prefix and body so far). */
RATCHET_API size_t
ratchet_frame_decoder_pending(const ratchet_frame_decoder *d);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_FRAME_H */
