/*
 * transport_private.h - what the two transports share and do not export.
 */
#ifndef RATCHET_TRANSPORT_PRIVATE_H
#define RATCHET_TRANSPORT_PRIVATE_H

#include <limits.h>
#include <stddef.h>

#include "ratchet/frame.h"

/* Returned by a frame callback to stop ratchet_frame_decoder_feed after
 * the frame it was given; no error code of ratchet or errno is INT_MIN. */
#define RATCHET__STOP INT_MIN

/* The read buffer of either transport. */
#define RATCHET__READ_BUF ((size_t)64 << 10)

/* A buffer's use over the last few frames, for ratchet__buf_trim. */
typedef struct ratchet__trim {
  size_t max; /* the most bytes used in the current window */
  unsigned n; /* uses counted in the current window */
} ratchet__trim;

#define RATCHET__TRIM_INIT                                                     \
  { 0, 0 }

/*
 * Records that b, now empty, has just held `used` bytes. Keeps b's memory for
 * reuse, so a steady stream of frames allocates nothing, but after a window
 * of 64 uses that all fit in a quarter of a buffer larger than 64 KiB,
 * shrinks it to the larger of 64 KiB and the window's largest use: one huge
 * frame does not pin its memory for the life of a connection. A failed
 * shrink keeps the buffer.
 */
void ratchet__buf_trim(ratchet_buf *b, ratchet__trim *w, size_t used);

#endif /* RATCHET_TRANSPORT_PRIVATE_H */
