#!/usr/bin/python3
"""echo_worker.py - a ratchet worker in Python, serving the task kind "echo".

A worker for another language needs only its own protobuf runtime and
ratchet.proto: this one uses Google's (Debian's python3-protobuf) and the
ratchet_pb2 module that `protoc --python_out` generates at build time.

It reads Frames on stdin and writes Frames on stdout:
  Hello     -> Ready (or Error{ERROR_VERSION} and exit 1 for another major
               protocol version)
  Task      -> Result{status OK, output = payload} for kind "echo",
               Result{STATUS_UNKNOWN_KIND} for any other kind
  Ping      -> Pong{seq, stats}
  Cancel    -> nothing (tasks are answered before the next frame is read)
  Shutdown  -> exit 0
Anything before Hello, or a message a worker never receives, gets
Error{ERROR_UNEXPECTED}; a bad frame gets Error{ERROR_FRAME} or
Error{ERROR_DECODE}; both exit 1. A clean end of stdin exits 0.

usage: echo_worker.py [--pb2-dir DIR] [--max-frame-size BYTES]
"""

import argparse
import os
import sys
import time

import ratchet_wire as wire

PROTOCOL_VERSION = 1
EXIT_PROTOCOL = 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pb2-dir", help="directory holding ratchet_pb2.py")
    ap.add_argument("--max-frame-size", type=int,
                    default=wire.FRAME_MAX_DEFAULT,
                    help="largest frame accepted, in bytes")
    args = ap.parse_args()
    pb = wire.load_pb2(args.pb2_dir)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    started = time.monotonic()
    done = 0
    peer_max = wire.FRAME_MAX_DEFAULT
    greeted = False

    def fail(code, text):
        wire.write_frame(out, wire.error_frame(pb, code, text))
        return EXIT_PROTOCOL

    while True:
        try:
            frame = wire.read_frame(pb, inp, args.max_frame_size)
        except wire.FrameError as e:
            return fail(e.code, e.text)
        if frame is None:
            return 0
        kind = frame.WhichOneof("msg")
        if kind == "hello" and not greeted:
            greeted = True
            v = frame.hello.protocol_version
            if v != PROTOCOL_VERSION:
                return fail("ERROR_VERSION",
                            "worker speaks protocol %d, orchestrator speaks %d"
                            % (PROTOCOL_VERSION, v))
            if frame.hello.max_frame_size:
                peer_max = frame.hello.max_frame_size
            reply = pb.Frame()
            r = reply.ready
            r.protocol_version = PROTOCOL_VERSION
            r.worker_version = "0.1.0"
            r.pid = os.getpid()
            r.kinds.append("echo")
            r.max_frame_size = args.max_frame_size
            r.max_in_flight = 1
            r.worker_name = "python-echo"
            wire.write_frame(out, reply)
        elif kind == "error":
            sys.stderr.write("echo_worker.py: orchestrator error: %s\n"
                             % frame.error.text)
            return EXIT_PROTOCOL
        elif not greeted:
            return fail("ERROR_UNEXPECTED", "expected Hello first")
        elif kind == "task":
            t = frame.task
            reply = pb.Frame()
            res = reply.result
            res.id = t.id
            res.attempt = t.attempt
            if t.kind == "echo":
                res.status = pb.STATUS_OK
                res.output = t.payload
            else:
                res.status = pb.STATUS_UNKNOWN_KIND
                res.error = 'this worker serves only the kind "echo"'
            if reply.ByteSize() > peer_max:
                res.Clear()
                res.id, res.attempt = t.id, t.attempt
                res.status = pb.STATUS_INTERNAL_ERROR
                res.error = "output over the orchestrator's max_frame_size"
            wire.write_frame(out, reply)
            done += 1
        elif kind == "ping":
            reply = pb.Frame()
            reply.pong.seq = frame.ping.seq
            reply.pong.stats.tasks_done = done
            reply.pong.stats.uptime_ms = int((time.monotonic() - started) * 1000)
            wire.write_frame(out, reply)
        elif kind == "cancel":
            pass
        elif kind == "shutdown":
            return 0
        else:
            return fail("ERROR_UNEXPECTED", "unexpected %s" % kind)


if __name__ == "__main__":
    sys.exit(main())
