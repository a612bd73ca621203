/*
 * ratchet/key.h - 128-bit task keys and the manifests that explain them.
 *
 * A task's result may be reused only if everything it depends on is the
 * same. The caller states each of those things as a named component of one
 * of six parts (its kind, its payload, an input, an environment variable, a
 * tool version, a salt); the builder turns them into a 128-bit key
 * (xxh3-128) and a manifest: the sorted list of components, each with its
 * length and its own 128-bit digest. The key is the xxh3-128 of the
 * manifest's bytes, so the manifest is a complete, canonical description of
 * the key and can be stored beside the result.
 *
 * Canonical encoding. Each component enters the key as
 *   part (1 byte) | name length (u32 LE) | name | value length (u64 LE) |
 *   xxh3-128 of the value (16 bytes, high half first, big-endian)
 * so that ("ab", "c") and ("a", "bc") never collide, and the components are
 * sorted by (part, name) first: the key does not depend on the order in
 * which the caller added them (a directory listing in another order is not a
 * miss). A component may be added twice only with the same value.
 *
 * Explain. When a task misses, comparing the manifest of its last stored
 * result with the manifest of the new key names what changed: "input
 * 'src/main.c' changed", "salt changed", "env CC added". The store keeps the
 * last manifest per task name for that (see ratchet_store_last_manifest).
 *
 * Threads: a builder belongs to one thread at a time; the other functions
 * are pure and may be called from any thread.
 */
#ifndef RATCHET_KEY_H
#define RATCHET_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "ratchet/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A 128-bit key: hi is the first 64 bits of the xxh3-128 digest. */
typedef struct ratchet_cache_key {
  uint64_t hi, lo;
} ratchet_cache_key;

/* The 32 lowercase hex digits of a key, plus the terminating NUL. */
#define RATCHET_CACHE_KEY_HEX_SIZE 33

/* The longest component name, in bytes. */
#define RATCHET_KEY_NAME_MAX 4096

/* What a component is; the order is the sort order of the manifest. */
typedef enum ratchet_key_part {
  RATCHET_KEY_KIND = 1,    /* the task kind ("cc", "test"); name optional */
  RATCHET_KEY_PAYLOAD = 2, /* the task's payload / arguments; name optional */
  RATCHET_KEY_INPUT = 3,   /* a declared input: name (a path), contents */
  RATCHET_KEY_ENV = 4,     /* an environment variable: name, value */
  RATCHET_KEY_TOOL = 5,    /* a tool and its version: name, version string */
  RATCHET_KEY_SALT = 6     /* a version salt, to invalidate by hand */
} ratchet_key_part;

typedef struct ratchet_key_builder ratchet_key_builder;

/* "kind", "payload", "input", "env", "tool", "salt"; NULL if unknown. */
RATCHET_API const char *ratchet_key_part_name(ratchet_key_part part);

/* Creates an empty builder. 0 and *out, or -ENOMEM (*out unchanged). */
RATCHET_API int ratchet_key_builder_new(ratchet_key_builder **out);

/* Frees the builder and any manifest it handed out. NULL is a no-op. */
RATCHET_API void ratchet_key_builder_free(ratchet_key_builder *b);

/* Forgets every component, keeping the memory for the next key. */
RATCHET_API void ratchet_key_builder_reset(ratchet_key_builder *b);

/*
 * Adds a component: part, name (a NUL-terminated string, copied; NULL is the
 * empty name) and value (len bytes, hashed at once and not kept; NULL only
 * with len 0). INPUT, ENV and TOOL need a non-empty name. Returns 0;
 * -EINVAL for a bad part, name or value (a name longer than
 * RATCHET_KEY_NAME_MAX); -ENOMEM. On failure the builder is unchanged.
 */
RATCHET_API int ratchet_key_add(ratchet_key_builder *b, ratchet_key_part part,
                                const char *name, const void *value,
                                size_t len);

/* Shorthands for ratchet_key_add. add_env with value NULL (an unset
 * variable) adds nothing and returns 0: setting it later is "env X added". */
RATCHET_API int ratchet_key_add_kind(ratchet_key_builder *b, const char *kind);
RATCHET_API int ratchet_key_add_payload(ratchet_key_builder *b,
                                        const void *payload, size_t len);
RATCHET_API int ratchet_key_add_input(ratchet_key_builder *b, const char *name,
                                      const void *contents, size_t len);
RATCHET_API int ratchet_key_add_env(ratchet_key_builder *b, const char *name,
                                    const char *value);
RATCHET_API int ratchet_key_add_tool(ratchet_key_builder *b, const char *name,
                                     const char *version);
RATCHET_API int ratchet_key_add_salt(ratchet_key_builder *b, const char *salt);

/*
 * Adds an INPUT component named name whose value is the contents of the file
 * at path (read in 64 KiB pieces, never held whole). The key is the same as
 * for ratchet_key_add_input with those bytes. Returns 0; -EINVAL (also for
 * anything but a regular file: a FIFO or a device has no stable contents);
 * -EISDIR; -ENOMEM; or the negated errno of open/read (-ENOENT, -EACCES...).
 * On failure the builder is unchanged.
 */
RATCHET_API int ratchet_key_add_file(ratchet_key_builder *b, const char *name,
                                     const char *path);

/* The number of components added so far (duplicates counted once only
 * after ratchet_key_finish). */
RATCHET_API size_t ratchet_key_count(const ratchet_key_builder *b);

/*
 * Computes the key of the components added so far into *key; the builder
 * keeps them (more may be added and finish called again). Returns 0;
 * -EEXIST if two components have the same part and name but different
 * values (the builder is unchanged); -ENOMEM.
 */
RATCHET_API int ratchet_key_finish(ratchet_key_builder *b,
                                   ratchet_cache_key *key);

/*
 * The manifest of the last successful ratchet_key_finish: *data (borrowed,
 * valid until the builder is changed or freed) and *len. Returns 0, or
 * -EINVAL if finish has not succeeded since the last change.
 */
RATCHET_API int ratchet_key_manifest(const ratchet_key_builder *b,
                                     const void **data, size_t *len);

/* One component of a manifest, as ratchet_key_manifest_foreach shows it.
 * name points into the manifest (not NUL-terminated: use name_len). */
typedef struct ratchet_key_component {
  ratchet_key_part part;
  const char *name;
  size_t name_len;
  uint64_t value_len;
  ratchet_cache_key digest; /* xxh3-128 of the value */
} ratchet_key_component;

/*
 * Checks a manifest (from ratchet_key_manifest, perhaps stored and read
 * back) and, if fn is not NULL, calls fn for each component in order; a
 * non-zero return from fn stops the walk and is returned. Returns 0, or
 * -EINVAL if the bytes are not a well-formed, canonical manifest.
 */
RATCHET_API int ratchet_key_manifest_foreach(
    const void *data, size_t len,
    int (*fn)(void *ctx, const ratchet_key_component *c), void *ctx);

/* The key a manifest describes. 0, or -EINVAL for a malformed manifest. */
RATCHET_API int ratchet_key_manifest_key(const void *data, size_t len,
                                         ratchet_cache_key *key);

/*
 * Explains how the components of new_m differ from those of old_m: one line
 * per difference, in manifest order, each ending in '\n':
 *   "kind changed", "payload changed", "salt changed",
 *   "input 'src/main.c' changed", "input 'x.h' added", "env CC removed",
 *   "tool 'cc' changed", "salt 'v2' added" (named kind/payload/salt).
 * Names are printed with bytes outside printable ASCII (and ' and \) as \xNN.
 * old_m may be NULL (no previous key): the text is then "no previous key\n".
 * Identical manifests give "no component changed\n".
 *
 * Returns the number of differences (>= 0) and *text (free with
 * ratchet_free); -EINVAL if either manifest is malformed; -ENOMEM.
 */
RATCHET_API int ratchet_key_explain(const void *old_m, size_t old_len,
                                    const void *new_m, size_t new_len,
                                    char **text);

/* Writes the key as 32 lowercase hex digits and a NUL into
 * buf[RATCHET_CACHE_KEY_HEX_SIZE]; returns buf. */
RATCHET_API char *ratchet_cache_key_hex(const ratchet_cache_key *key,
                                        char buf[RATCHET_CACHE_KEY_HEX_SIZE]);

/* Parses exactly 32 hex digits (either case): 0 and *key, or -EINVAL. */
RATCHET_API int ratchet_cache_key_parse(const char *hex,
                                        ratchet_cache_key *key);

/* The 16 bytes of a key, high half first, big-endian: the byte form used as
 * a memory-tier and LMDB key (byte order equals numeric order). */
RATCHET_API void ratchet_cache_key_bytes(const ratchet_cache_key *key,
                                         unsigned char out[16]);

/* Two keys are equal: 1, else 0. */
RATCHET_API int ratchet_cache_key_equal(const ratchet_cache_key *a,
                                        const ratchet_cache_key *b);

#ifdef __cplusplus
}
#endif
#endif /* RATCHET_KEY_H */
