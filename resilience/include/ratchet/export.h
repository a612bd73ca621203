/*
 * ratchet/export.h - symbol visibility for ratchet's shared libraries.
 *
 * Libraries build with -fvisibility=hidden; RATCHET_API marks the public
 * declarations, so that only the documented API is exported.
 */
#ifndef RATCHET_EXPORT_H
#define RATCHET_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define RATCHET_API __attribute__((visibility("default")))
#else
#define RATCHET_API
#endif

#endif /* RATCHET_EXPORT_H */
