/*
 * codec.c - ratchet.v1.Frame messages to and from frame bodies, the
 * handshake's version checks and the Error frame sent before closing.
 *
 * Encoding asks protoc-c's code for the packed size, reserves the varint
 * and the message in the caller's ratchet_buf and packs straight into it, so
 * a reused buffer makes encoding allocation-free. Unpacking goes through a
 * ProtobufCAllocator that routes to ratchet_malloc/ratchet_free (tests
 * inject failures there) and notes whether an allocation failed, because
 * protobuf-c reports both a parse error and an allocation failure as NULL
 * and the caller must tell "the peer sent garbage" from "we are out of
 * memory".
 *
 * The generated INIT macros cast protobuf_c_empty_string to char *, which
 * our -Wcast-qual refuses; messages built here use the generated _init()
 * functions instead.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ratchet/alloc.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"

/* allocator_data of the unpack allocator: set when an allocation failed. */
typedef struct unpack_state {
  int oom;
} unpack_state;

static void *pb_alloc(void *data, size_t size) {
  /* ratchet_malloc(0) may return NULL, which protobuf-c would take for a
   * failure. */
  void *p = ratchet_malloc(size > 0 ? size : 1);
  if (p == NULL && data != NULL)
    ((unpack_state *)data)->oom = 1;
  return p;
}

static void pb_free(void *data, void *ptr) {
  (void)data;
  ratchet_free(ptr);
}

/* Used to free unpacked frames; holds no state, so it is shared. */
static ProtobufCAllocator free_allocator = {pb_alloc, pb_free, NULL};

/* The set member of frame, or NULL when none is (or msg_case is unknown). */
static const void *frame_member(const Ratchet__V1__Frame *f) {
  switch (f->msg_case) {
  case RATCHET__V1__FRAME__MSG_HELLO:
    return f->hello;
  case RATCHET__V1__FRAME__MSG_READY:
    return f->ready;
  case RATCHET__V1__FRAME__MSG_TASK:
    return f->task;
  case RATCHET__V1__FRAME__MSG_RESULT:
    return f->result;
  case RATCHET__V1__FRAME__MSG_CANCEL:
    return f->cancel;
  case RATCHET__V1__FRAME__MSG_PING:
    return f->ping;
  case RATCHET__V1__FRAME__MSG_PONG:
    return f->pong;
  case RATCHET__V1__FRAME__MSG_SHUTDOWN:
    return f->shutdown;
  case RATCHET__V1__FRAME__MSG_LOG:
    return f->log;
  case RATCHET__V1__FRAME__MSG_ERROR:
    return f->error;
  case RATCHET__V1__FRAME__MSG__NOT_SET:
  default:
    return NULL;
  }
}

/* Checks that frame can be sent and sets *size to its packed length. */
static int frame_size(const Ratchet__V1__Frame *frame, size_t max_frame_size,
                      size_t *size) {
  if (frame == NULL ||
      frame->base.descriptor != &ratchet__v1__frame__descriptor)
    return -EINVAL;
  if (frame->msg_case == RATCHET__V1__FRAME__MSG__NOT_SET)
    return RATCHET_EFRAME_EMPTY;
  /* A NULL member would be packed as nothing, and the peer would see an
   * empty Frame: refuse it here, where the bug is. */
  if (frame_member(frame) == NULL)
    return -EINVAL;
  *size = ratchet__v1__frame__get_packed_size(frame);
  if (*size >
      (max_frame_size == 0 ? RATCHET_FRAME_MAX_DEFAULT : max_frame_size))
    return RATCHET_EFRAME_TOO_BIG;
  return 0;
}

int ratchet_codec_encode(ratchet_buf *buf, const Ratchet__V1__Frame *frame,
                         size_t max_frame_size) {
  size_t size;
  int rc = frame_size(frame, max_frame_size, &size);
  if (rc < 0)
    return rc;
  if (size > SIZE_MAX - RATCHET_FRAME_VARINT_MAX)
    return -ENOMEM;
  if ((rc = ratchet_buf_reserve(buf, RATCHET_FRAME_VARINT_MAX + size)) < 0)
    return rc;
  uint8_t *p = buf->data + buf->len;
  size_t n = ratchet_varint_encode(size, p);
  size_t packed = ratchet__v1__frame__pack(frame, p + n);
  buf->len += n + packed;
  return 0;
}

int ratchet_codec_write(const Ratchet__V1__Frame *frame, size_t max_frame_size,
                        uint8_t *dst, size_t cap, size_t *written) {
  uint8_t pfx[RATCHET_FRAME_VARINT_MAX];
  size_t size;
  int rc = frame_size(frame, max_frame_size, &size);
  if (rc < 0)
    return rc;
  size_t n = ratchet_varint_encode(size, pfx);
  if (size > cap || n > cap - size) {
    *written = n + size;
    return -ENOBUFS;
  }
  memcpy(dst, pfx, n);
  *written = n + ratchet__v1__frame__pack(frame, dst + n);
  return 0;
}

int ratchet_codec_unpack(const void *body, size_t len,
                         Ratchet__V1__Frame **out) {
  if (out == NULL)
    return -EINVAL;
  *out = NULL;
  if (body == NULL && len > 0)
    return -EINVAL;
  unpack_state st = {0};
  ProtobufCAllocator a = {pb_alloc, pb_free, &st};
  /* protobuf-c reads nothing for len == 0, but wants a pointer anyway. */
  static const uint8_t none[1];
  Ratchet__V1__Frame *f =
      ratchet__v1__frame__unpack(&a, len, len > 0 ? body : none);
  if (f == NULL)
    return st.oom ? -ENOMEM : RATCHET_EFRAME_UNDECODABLE;
  int rc = ratchet_codec_check_frame(f);
  if (rc < 0) {
    ratchet__v1__frame__free_unpacked(f, &free_allocator);
    return rc;
  }
  *out = f;
  return 0;
}

/* The largest field number protobuf allows: a tag (number << 3 | wire type)
 * must fit in 32 bits. */
#define FIELD_NUMBER_MAX 0x1fffffffu

/* True if m or a message inside it holds an unknown field whose number
 * protobuf forbids: 0, or above FIELD_NUMBER_MAX. protobuf-c refuses the
 * one-byte tag 0x00 but not an overlong tag of 0 (0x80 0x00), nor a
 * five-byte tag over 32 bits; it keeps both as unknown fields. Other
 * protobuf runtimes reject them, so we do too. The schema has no recursive
 * messages, so the depth is bounded by it. */
static int has_bad_field(const ProtobufCMessage *m) {
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == 0 ||
        m->unknown_fields[i].tag > FIELD_NUMBER_MAX)
      return 1;
  const ProtobufCMessageDescriptor *desc = m->descriptor;
  const char *base = (const char *)m;
  for (unsigned i = 0; i < desc->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &desc->fields[i];
    if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n;
      const ProtobufCMessage *const *v;
      memcpy(&n, base + fd->quantifier_offset, sizeof n);
      memcpy(&v, base + fd->offset, sizeof v);
      for (size_t j = 0; j < n; j++)
        if (v[j] != NULL && has_bad_field(v[j]))
          return 1;
      continue;
    }
    if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      uint32_t set;
      memcpy(&set, base + fd->quantifier_offset, sizeof set);
      if (set != fd->id)
        continue; /* the union holds another member */
    }
    const ProtobufCMessage *sub;
    memcpy(&sub, base + fd->offset, sizeof sub);
    if (sub != NULL && has_bad_field(sub))
      return 1;
  }
  return 0;
}

int ratchet_codec_check_frame(const Ratchet__V1__Frame *frame) {
  if (frame == NULL ||
      frame->base.descriptor != &ratchet__v1__frame__descriptor)
    return -EINVAL;
  /* No member, or (defensively) a set case with no message. Checked first,
   * so that a frame both empty and holding a bad field is called empty by
   * every unpacker, whether it uses this function or only tests msg_case. */
  if (frame_member(frame) == NULL)
    return RATCHET_EFRAME_EMPTY;
  if (has_bad_field(&frame->base))
    return RATCHET_EFRAME_UNDECODABLE;
  return 0;
}

void ratchet_codec_frame_free(Ratchet__V1__Frame *frame) {
  if (frame != NULL)
    ratchet__v1__frame__free_unpacked(frame, &free_allocator);
}

/* Compares the peer's version with ours; see codec.h. */
static int check_version(uint32_t theirs, const char *peer, const char *us,
                         char *text, size_t cap) {
  if (theirs == RATCHET_PROTOCOL_VERSION) {
    if (cap > 0)
      text[0] = '\0';
    return 0;
  }
  if (cap > 0) {
    if (theirs == 0)
      snprintf(text, cap,
               "%s did not state its protocol version, %s speaks protocol %u",
               peer, us, RATCHET_PROTOCOL_VERSION);
    else
      snprintf(text, cap, "%s speaks protocol %u, %s speaks %u", peer,
               (unsigned)theirs, us, RATCHET_PROTOCOL_VERSION);
  }
  return RATCHET_EPROTO_VERSION;
}

int ratchet_codec_check_hello(const Ratchet__V1__Hello *hello, char *text,
                              size_t cap) {
  if (hello == NULL)
    return -EINVAL;
  return check_version(hello->protocol_version, "orchestrator", "this worker",
                       text, cap);
}

int ratchet_codec_check_ready(const Ratchet__V1__Ready *ready, char *text,
                              size_t cap) {
  if (ready == NULL)
    return -EINVAL;
  return check_version(ready->protocol_version, "worker", "orchestrator", text,
                       cap);
}

Ratchet__V1__ErrorCode ratchet_codec_error_code(int err) {
  switch (err) {
  case 0:
    return RATCHET__V1__ERROR_CODE__ERROR_UNSPECIFIED;
  case RATCHET_EFRAME_VARINT:
  case RATCHET_EFRAME_TOO_BIG:
  case RATCHET_EFRAME_TRUNCATED:
    return RATCHET__V1__ERROR_CODE__ERROR_FRAME;
  case RATCHET_EFRAME_UNDECODABLE:
  case RATCHET_EFRAME_EMPTY:
    return RATCHET__V1__ERROR_CODE__ERROR_DECODE;
  case RATCHET_EPROTO_VERSION:
    return RATCHET__V1__ERROR_CODE__ERROR_VERSION;
  case RATCHET_EPROTO_UNEXPECTED:
    return RATCHET__V1__ERROR_CODE__ERROR_UNEXPECTED;
  default:
    return RATCHET__V1__ERROR_CODE__ERROR_INTERNAL;
  }
}

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0 if
 * there is none: overlong forms, surrogates and code points past U+10FFFF
 * are invalid, as in every strict decoder. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;
  } else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return len;
}

/* Copies src into dst (cap >= 1 bytes), replacing invalid UTF-8 bytes with
 * '?' and stopping before a character that would not fit. */
static void utf8_sanitize(char *dst, size_t cap, const char *src) {
  const unsigned char *s = (const unsigned char *)src;
  size_t n = strlen(src), o = 0;
  while (n > 0) {
    size_t k = utf8_seq(s, n);
    size_t w = k > 0 ? k : 1;
    if (w > cap - 1 - o)
      break;
    if (k > 0)
      memcpy(dst + o, s, k);
    else
      dst[o] = '?';
    o += w;
    s += w;
    n -= w;
  }
  dst[o] = '\0';
}

int ratchet_codec_encode_error(ratchet_buf *buf, int err, const char *text,
                               size_t max_frame_size) {
  char clean[RATCHET_CODEC_ERROR_TEXT_MAX + 1];
  utf8_sanitize(clean, sizeof clean,
                text != NULL ? text : ratchet_strerror(err));
  Ratchet__V1__Error e;
  ratchet__v1__error__init(&e);
  e.code = ratchet_codec_error_code(err);
  e.text = clean;
  Ratchet__V1__Frame f;
  ratchet__v1__frame__init(&f);
  f.msg_case = RATCHET__V1__FRAME__MSG_ERROR;
  f.error = &e;
  return ratchet_codec_encode(buf, &f, max_frame_size);
}

size_t ratchet_codec_frame_limit(uint64_t announced) {
  if (announced == 0)
    return RATCHET_FRAME_MAX_DEFAULT;
  if (announced > SIZE_MAX / 2)
    return SIZE_MAX / 2;
  return (size_t)announced;
}

/* Looks v up in a table of names indexed by enum value. */
static const char *name_of(int v, const char *const *names, size_t n) {
  return v >= 0 && (size_t)v < n ? names[v] : "unknown";
}

#define NAME_OF(v, names) name_of((int)(v), names, sizeof names / sizeof *names)

const char *ratchet_codec_msg_name(Ratchet__V1__Frame__MsgCase c) {
  static const char *const names[] = {
      "none", "hello", "ready",    "task", "result", "cancel",
      "ping", "pong",  "shutdown", "log",  "error",
  };
  return NAME_OF(c, names);
}

const char *ratchet_codec_status_name(Ratchet__V1__Status s) {
  static const char *const names[] = {
      "unspecified", "ok",           "failed",      "timeout",
      "cancelled",   "unknown_kind", "bad_request", "internal_error",
  };
  return NAME_OF(s, names);
}

const char *ratchet_codec_error_code_name(Ratchet__V1__ErrorCode c) {
  static const char *const names[] = {
      "unspecified", "version", "frame", "decode", "unexpected", "internal",
  };
  return NAME_OF(c, names);
}

const char *ratchet_codec_log_level_name(Ratchet__V1__LogLevel l) {
  static const char *const names[] = {
      "unspecified", "debug", "info", "warn", "error",
  };
  return NAME_OF(l, names);
}
