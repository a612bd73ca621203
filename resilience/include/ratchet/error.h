/*
 * ratchet/error.h - the error codes shared by every ratchet library.
 *
 * Functions that can fail return 0 or a negative value: either a negated
 * errno value (-EINVAL, -ENOMEM), passed through unchanged as libuv does, or
 * one of ratchet's own codes below. Ours start at -30000, far below the range
 * any errno can take (Linux keeps them under 4096), so a caller can tell the
 * two apart and print either with ratchet_strerror().
 *
 * The table is the one source of truth: it generates the enum, the names and
 * the messages. A code is never renumbered or removed; new codes are added at
 * the end of their library's block.
 */
#ifndef RATCHET_ERROR_H
#define RATCHET_ERROR_H

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* XX(NAME, value, message). Blocks of 100 per library:
 * -30000 resilience, -30100 ipc, -30200 caching, -30300 runtime, -30400 cli.
 */
#define RATCHET_ERRNO_MAP(XX)                                                  \
  XX(EBREAKER_OPEN, -30000, "circuit breaker is open")                         \
  XX(ERATE_LIMITED, -30001, "rate limit reached")                              \
  XX(EBULKHEAD_FULL, -30002, "bulkhead is full")                               \
  XX(EATTEMPTS, -30003, "maximum number of attempts reached")                  \
  XX(EDEADLINE, -30004, "deadline or maximum elapsed time reached")            \
  XX(ENOT_RETRYABLE, -30005, "error is not retryable")                         \
  XX(EBUDGET, -30006, "retry budget exhausted")                                \
  XX(EFRAME_VARINT, -30100, "malformed varint length prefix")                  \
  XX(EFRAME_TOO_BIG, -30101, "frame length over the maximum frame size")       \
  XX(EFRAME_TRUNCATED, -30102, "stream ended inside a frame")                  \
  XX(EFRAME_UNDECODABLE, -30103, "frame is not a valid protobuf message")      \
  XX(EFRAME_EMPTY, -30104, "frame carries no message (empty oneof)")           \
  XX(EPROTO_VERSION, -30105, "unsupported protocol major version")             \
  XX(EPROTO_UNEXPECTED, -30106, "message not expected in this protocol state") \
  XX(EPEER, -30107, "peer reported a protocol error")                          \
  XX(EEOF, -30108, "end of stream")                                            \
  XX(ECACHE_CORRUPT, -30200, "cache store is corrupt")                         \
  XX(ECACHE_VERSION, -30201, "cache store has an unsupported format version")  \
  XX(ECACHE_FULL, -30202, "cache store is full")                               \
  XX(ECACHE_TOO_BIG, -30203, "value is larger than the cache can hold")        \
  XX(ECACHE_MISS, -30204, "no such key in the cache")                          \
  XX(ENOPOOL, -30300, "no pool serves this task kind")                         \
  XX(ENOGROUP, -30301, "no rate limit is configured for this group")

typedef enum ratchet_errno {
#define RATCHET__ERR_ENUM(name, value, msg) RATCHET_##name = (value),
  RATCHET_ERRNO_MAP(RATCHET__ERR_ENUM)
#undef RATCHET__ERR_ENUM
} ratchet_errno;

/* RATCHET_ERR_IS_OWN(err) is true when err lies in ratchet's own blocks
 * (-30000 .. -30499). LMDB's codes (-30799 .. -30780) lie just below; the
 * caching library maps them and never returns them. */
#define RATCHET_ERR_IS_OWN(err) ((err) <= -30000 && (err) > -30500)

/*
 * Returns a message for err: ratchet's own text for its codes, the C
 * library's strerror() text for a negated errno value, "success" for 0 and
 * "unknown error" otherwise. The string is static: never free it. Safe to call
 * from any thread.
 */
RATCHET_API const char *ratchet_strerror(int err);

/*
 * Returns the symbolic name of err: "RATCHET_EBREAKER_OPEN" for our codes,
 * "EINVAL" for a negated errno value the table knows, "OK" for 0 and
 * "UNKNOWN" otherwise. Static string, any thread.
 */
RATCHET_API const char *ratchet_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_ERROR_H */
