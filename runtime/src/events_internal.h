/*
 * events_internal.h - what the JSON-lines sink (events_jsonl.c) needs of the
 * bus (events.c) beyond the public API: a subscription with hooks that tell
 * it where events were dropped and when it is closed.
 */
#ifndef RATCHET_EVENTS_INTERNAL_H
#define RATCHET_EVENTS_INTERNAL_H

#include <stdint.h>

#include "ratchet/events.h"

/* A buffered subscription with private hooks: on_dropped(ctx, n) runs on the
 * delivery thread before the first event delivered after n drops, and once more
 * when the thread stops if the last events were dropped; on_close(ctx) runs on
 * the unsubscribing thread after the delivery thread has been joined (not when
 * subscribe fails). Both may be NULL. Otherwise as ratchet_events_subscribe.
 */
int ratchet__events_subscribe_hooks(ratchet_events *bus,
                                    const ratchet_subscriber_options *o,
                                    void (*on_dropped)(void *ctx, uint64_t n),
                                    void (*on_close)(void *ctx),
                                    ratchet_subscription **out);

#endif
