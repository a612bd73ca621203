/*
 * store_record.c - the record that holds one value of the persistent tier,
 * and its checksum.
 *
 * An entry of the `entries` table maps a key (16 bytes) to a record: a
 * 48-byte header, the manifest, then the value:
 *   magic "REN1" | manifest_len u32 | value_len u64 | created_ms u64 |
 *   expires_ms u64 | xxh3-128 (hi, lo; u64 LE each)
 * all little-endian. The checksum covers the key, the first 32 header bytes,
 * the manifest and the value, so a record that is damaged, cut short or
 * found under another key never passes for a value. Records are written
 * once, straight into the space LMDB reserves for them, and never modified
 * in place; they are parsed where they lie in the map, without a copy.
 */
#define _POSIX_C_SOURCE 200809L
#define XXH_STATIC_LINKING_ONLY
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>
#include <xxhash.h>

#include "store_private.h"

#define REC_MAGIC  "REN1"
#define REC_SUMMED 32u /* header bytes covered by the checksum */

bool ratchet__store_rec_parse(const MDB_val *v, struct ratchet__store_rec *r) {
  const unsigned char *p = v->mv_data;
  if (v->mv_size < REC_HEADER || memcmp(p, REC_MAGIC, 4) != 0)
    return false;
  r->manifest_len = ratchet__store_get_u32le(p + 4);
  r->value_len = ratchet__store_get_u64le(p + 8);
  r->created_ms = ratchet__store_get_u64le(p + 16);
  r->expires_ms = ratchet__store_get_u64le(p + 24);
  r->sum_hi = ratchet__store_get_u64le(p + 32);
  r->sum_lo = ratchet__store_get_u64le(p + 40);
  size_t body = v->mv_size - REC_HEADER;
  if (r->manifest_len > body || r->value_len != body - r->manifest_len)
    return false;
  r->header = p;
  r->manifest = p + REC_HEADER;
  r->value = p + REC_HEADER + r->manifest_len;
  r->size = v->mv_size;
  return true;
}

static XXH128_hash_t rec_sum(const unsigned char k[KEY_BYTES],
                             const unsigned char *header, const void *manifest,
                             size_t mlen, const void *value, size_t vlen) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  XXH3_128bits_reset(&st);
  XXH3_128bits_update(&st, k, KEY_BYTES);
  XXH3_128bits_update(&st, header, REC_SUMMED);
  if (mlen)
    XXH3_128bits_update(&st, manifest, mlen);
  if (vlen)
    XXH3_128bits_update(&st, value, vlen);
  return XXH3_128bits_digest(&st);
}

bool ratchet__store_rec_verify(const unsigned char k[KEY_BYTES],
                               const struct ratchet__store_rec *r) {
  XXH128_hash_t h = rec_sum(k, r->header, r->manifest, r->manifest_len,
                            r->value, (size_t)r->value_len);
  return h.high64 == r->sum_hi && h.low64 == r->sum_lo;
}

void ratchet__store_rec_write(unsigned char *p,
                              const unsigned char k[KEY_BYTES],
                              const void *manifest, size_t mlen,
                              const void *value, size_t vlen,
                              uint64_t created_ms, uint64_t expires_ms) {
  memcpy(p, REC_MAGIC, 4);
  ratchet__store_put_u32le(p + 4, (uint32_t)mlen);
  ratchet__store_put_u64le(p + 8, vlen);
  ratchet__store_put_u64le(p + 16, created_ms);
  ratchet__store_put_u64le(p + 24, expires_ms);
  if (mlen)
    memcpy(p + REC_HEADER, manifest, mlen);
  if (vlen)
    memcpy(p + REC_HEADER + mlen, value, vlen);
  XXH128_hash_t h = rec_sum(k, p, manifest, mlen, value, vlen);
  ratchet__store_put_u64le(p + 32, h.high64);
  ratchet__store_put_u64le(p + 40, h.low64);
}
