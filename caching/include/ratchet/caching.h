/*
 * ratchet/caching.h - the whole public API of libratchet-caching: the memory
 * tier and its policies (cache.h, cache_policy.h), task keys (key.h), the
 * persistent tier (store.h), the two-tier cache (tiered.h) and single-flight
 * (singleflight.h).
 */
#ifndef RATCHET_CACHING_H
#define RATCHET_CACHING_H

#include "ratchet/cache.h"
#include "ratchet/cache_policy.h"
#include "ratchet/key.h"
#include "ratchet/singleflight.h"
#include "ratchet/store.h"
#include "ratchet/tiered.h"

#endif /* RATCHET_CACHING_H */
