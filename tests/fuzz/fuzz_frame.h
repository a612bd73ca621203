/*
 * fuzz_frame.h - the libFuzzer entry point of fuzz_frame.c, declared for
 * the corpus replay driver (replay.c).
 */
#ifndef RATCHET_FUZZ_FRAME_H
#define RATCHET_FUZZ_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Runs one input; returns 0, aborts on any inconsistency. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
