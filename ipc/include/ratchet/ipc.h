/*
 * ratchet/ipc.h - everything in libratchet-ipc.
 *
 * ratchet's wire protocol between the orchestrator and its workers: the
 * generated ratchet.v1 messages, length-delimited framing (frame.h), the
 * message codec and handshake checks (codec.h) and the stdio transports
 * (transport.h). docs/protocol.md is the wire specification.
 */
#ifndef RATCHET_IPC_H
#define RATCHET_IPC_H

#include "ratchet/codec.h"
#include "ratchet/frame.h"
#include "ratchet/transport.h"

#endif /* RATCHET_IPC_H */
