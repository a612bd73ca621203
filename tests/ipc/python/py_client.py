#!/usr/bin/python3
"""py_client.py - drives a ratchet worker from Python, as an orchestrator
would, to check that a worker written against ratchet.proto (in C with
libratchet-ipc, or in any language) reads and writes frames that Google's
protobuf runtime agrees with.

Each scenario starts the worker command afresh with pipes on its stdin and
stdout:
  echo         Hello/Ready, tasks of 0 B to 1 MiB (binary, UTF-8 metadata),
               16 tasks pipelined, an unknown kind, Ping/Pong, Shutdown -> 0
  eof          Hello/Ready, then stdin closed between frames -> exit 0
  version      Hello with protocol_version 2 -> Error{ERROR_VERSION}, exit 1
  unexpected   a Task before Hello -> Error{ERROR_UNEXPECTED}, exit 1
  varint       eleven 0xff bytes -> Error{ERROR_FRAME}, exit 1
  undecodable  a frame whose body is not a Frame -> Error{ERROR_DECODE}
  truncated    stdin closed inside a frame -> Error{ERROR_FRAME}, exit 1
Prints "ok NAME" per scenario; exits 0 if all passed, 1 otherwise.

usage: py_client.py [--pb2-dir DIR] [--only NAME,...] -- WORKER [ARGS...]
"""

import argparse
import random
import signal
import subprocess
import sys

import ratchet_wire as wire

pb = None


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


class Worker:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)

    def send(self, frame):
        wire.write_frame(self.p.stdin, frame)

    def send_raw(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def recv(self):
        return wire.read_frame(pb, self.p.stdout)

    def close_stdin(self):
        self.p.stdin.close()

    def finish(self):
        """Closes stdin, checks stdout ends cleanly, returns the exit code."""
        if not self.p.stdin.closed:
            self.p.stdin.close()
        rest = self.p.stdout.read()
        self.p.stdout.close()
        code = self.p.wait()
        expect(rest == b"", "%d unexpected bytes after the last frame"
               % len(rest))
        return code


def hello(version=1):
    f = pb.Frame()
    h = f.hello
    h.protocol_version = version
    h.orchestrator_version = "py-client"
    h.max_frame_size = 64 << 20
    h.worker_id = 7
    h.pipeline_depth = 16
    return f


def task(tid, payload, kind="echo", metadata=None):
    f = pb.Frame()
    t = f.task
    t.id = tid
    t.attempt = 1
    t.kind = kind
    t.payload = payload
    for k, v in (metadata or {}).items():
        t.metadata[k] = v
    return f


def handshake(w):
    w.send(hello())
    f = w.recv()
    expect(f is not None and f.WhichOneof("msg") == "ready",
           "no Ready after Hello")
    r = f.ready
    expect(r.protocol_version == 1, "Ready.protocol_version %d"
           % r.protocol_version)
    expect("echo" in r.kinds, "Ready.kinds lacks echo: %s" % list(r.kinds))
    expect(r.pid == w.p.pid, "Ready.pid %d, worker pid %d" % (r.pid, w.p.pid))
    expect(r.max_frame_size > 0, "Ready.max_frame_size is 0")


def expect_error(w, code):
    f = w.recv()
    expect(f is not None and f.WhichOneof("msg") == "error",
           "no Error frame (got %s)" % (f and f.WhichOneof("msg")))
    expect(f.error.code == pb.ErrorCode.Value(code),
           "Error code %s, expected %s"
           % (pb.ErrorCode.Name(f.error.code), code))
    expect(f.error.text != "", "Error without text")


def expect_result(w, tid, payload):
    f = w.recv()
    expect(f is not None and f.WhichOneof("msg") == "result",
           "no Result for task %d" % tid)
    r = f.result
    expect(r.id == tid, "Result.id %d, expected %d" % (r.id, tid))
    expect(r.status == pb.STATUS_OK, "Result.status %s"
           % pb.Status.Name(r.status))
    expect(r.attempt == 1, "Result.attempt %d" % r.attempt)
    expect(r.output == payload, "Result.output differs for task %d "
           "(%d bytes, expected %d)" % (tid, len(r.output), len(payload)))


def s_echo(argv):
    w = Worker(argv)
    handshake(w)
    rng = random.Random(42)
    payloads = [b"", bytes(range(256)), "héllo wörld ✓".encode(),
                bytes(rng.getrandbits(8) for _ in range(70000)),
                rng.randbytes(1 << 20)]
    tid = 1
    for p in payloads:
        w.send(task(tid, p, metadata={"clé": "välue", "k": ""}))
        expect_result(w, tid, p)
        tid += 1
    # Pipelined: 16 tasks written before any answer is read.
    batch = [(tid + i, rng.randbytes(rng.randrange(0, 2000)))
             for i in range(16)]
    for i, p in batch:
        w.send(task(i, p))
    for i, p in batch:
        expect_result(w, i, p)
    tid += 16
    w.send(task(tid, b"x", kind="no-such-kind"))
    f = w.recv()
    expect(f.WhichOneof("msg") == "result" and f.result.id == tid and
           f.result.status == pb.STATUS_UNKNOWN_KIND,
           "unknown kind not answered with STATUS_UNKNOWN_KIND")
    c = pb.Frame()
    c.cancel.id = 12345
    w.send(c)
    ping = pb.Frame()
    ping.ping.seq = 5
    w.send(ping)
    f = w.recv()
    expect(f.WhichOneof("msg") == "pong" and f.pong.seq == 5,
           "no Pong{seq 5}")
    expect(f.pong.stats.tasks_done == tid,
           "Pong.stats.tasks_done %d, expected %d"
           % (f.pong.stats.tasks_done, tid))
    sd = pb.Frame()
    sd.shutdown.grace_ms = 1000
    w.send(sd)
    code = w.finish()
    expect(code == 0, "exit status %d after Shutdown" % code)


def s_eof(argv):
    w = Worker(argv)
    handshake(w)
    code = w.finish()
    expect(code == 0, "exit status %d after EOF" % code)


def s_version(argv):
    w = Worker(argv)
    w.send(hello(version=2))
    expect_error(w, "ERROR_VERSION")
    code = w.finish()
    expect(code == 1, "exit status %d after a version mismatch" % code)


def s_unexpected(argv):
    w = Worker(argv)
    w.send(task(1, b"too early"))
    expect_error(w, "ERROR_UNEXPECTED")
    expect(w.finish() == 1, "exit status not 1")


def s_varint(argv):
    w = Worker(argv)
    handshake(w)
    w.send_raw(b"\xff" * 11)
    expect_error(w, "ERROR_FRAME")
    expect(w.finish() == 1, "exit status not 1")


def s_undecodable(argv):
    w = Worker(argv)
    handshake(w)
    w.send_raw(b"\x03\xff\xff\xff")
    expect_error(w, "ERROR_DECODE")
    expect(w.finish() == 1, "exit status not 1")


def s_truncated(argv):
    w = Worker(argv)
    handshake(w)
    body = task(1, b"cut short").SerializeToString()
    w.send_raw(wire.encode_varint(len(body)) + body[: len(body) // 2])
    w.close_stdin()
    expect_error(w, "ERROR_FRAME")
    expect(w.finish() == 1, "exit status not 1")


SCENARIOS = [("echo", s_echo), ("eof", s_eof), ("version", s_version),
             ("unexpected", s_unexpected), ("varint", s_varint),
             ("undecodable", s_undecodable), ("truncated", s_truncated)]


def main():
    global pb
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pb2-dir", help="directory holding ratchet_pb2.py")
    ap.add_argument("--only", help="comma-separated scenario names")
    ap.add_argument("worker", nargs="+", help="the worker command")
    args = ap.parse_args()
    pb = wire.load_pb2(args.pb2_dir)
    # A worker that hangs must fail the run, not stall it.
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("py_client: timed out"))
    signal.alarm(60)
    only = set(args.only.split(",")) if args.only else None
    failed = 0
    for name, fn in SCENARIOS:
        if only and name not in only:
            continue
        try:
            fn(args.worker)
            print("ok %s" % name, flush=True)
        except (Failed, wire.FrameError, BrokenPipeError) as e:
            print("FAIL %s: %s" % (name, e), flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
