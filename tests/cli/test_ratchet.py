#!/usr/bin/python3
"""test_ratchet.py - integration tests of the built `ratchet` binary.

Drives the executable as a user does (exit statuses and messages of every
subcommand, bad flags and values, `ratchet run --dry-run`, `ratchet cache`
on a temporary store) and as an orchestrator does (`ratchet worker` over
its stdin/stdout with ratchet_pb2 from Debian's python3-protobuf: echo,
exec with big outputs, exit codes, signals, deadlines and Cancel that end
the whole process group, plugins and their ABI check).

Run by ctest (tests/cli/CMakeLists.txt) as
  test_ratchet.py --ratchet PATH --pb2-dir DIR --plugin SO --plugin-abi99 SO
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None
pb = None
WRAP = []  # e.g. valgrind and its options, from --wrap


# ---- framing -----------------------------------------------------------

def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_exact(f, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("stream ended after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_frame(f):
    shift = 0
    n = 0
    while True:
        b = f.read(1)
        if not b:
            raise EOFError("end of stream")
        n |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            break
        shift += 7
    fr = pb.Frame()
    fr.ParseFromString(read_exact(f, n))
    return fr


class Worker:
    """A `ratchet worker` process and the orchestrator's side of it."""

    def __init__(self, *extra, env=None):
        self.p = subprocess.Popen([*WRAP, ARGS.ratchet, "worker", *extra],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        self.next_id = 1

    def send(self, **kw):
        fr = pb.Frame(**kw)
        body = fr.SerializeToString()
        self.p.stdin.write(varint(len(body)) + body)
        self.p.stdin.flush()

    def recv(self):
        while True:
            fr = read_frame(self.p.stdout)
            if fr.WhichOneof("msg") != "log":
                return fr

    def hello(self):
        self.send(hello=pb.Hello(protocol_version=1, pipeline_depth=1))
        fr = self.recv()
        assert fr.WhichOneof("msg") == "ready", fr
        return fr.ready

    def task(self, kind, payload, deadline_ms=0):
        tid = self.next_id
        self.next_id += 1
        self.send(task=pb.Task(id=tid, attempt=1, kind=kind, payload=payload,
                               deadline_unix_ms=deadline_ms))
        return tid

    def result(self):
        fr = self.recv()
        assert fr.WhichOneof("msg") == "result", fr
        return fr.result

    def close(self):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.p.wait(timeout=10)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        return self.p.returncode, err


def exec_payload(argv, **kw):
    return pb.ExecRequest(argv=argv, **kw).SerializeToString()


def group_gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_for_file(path, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    raise AssertionError("%s never appeared" % path)


def read_text(path):
    with open(path) as f:
        return f.read()


def ratchet(*args, stdin=None, env=None):
    return subprocess.run([*WRAP, ARGS.ratchet, *args], input=stdin,
                          capture_output=True, env=env, timeout=60)


# ---- the user's side ---------------------------------------------------

class CommandLine(unittest.TestCase):

    def test_version_and_help(self):
        r = ratchet("version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.decode(), r"^ratchet \d+\.\d+\.\d+\n$")
        for args in (["help"], ["--help"], ["help", "run"],
                     ["help", "worker"], ["help", "cache"],
                     ["run", "--help"], ["run", "-h"], ["worker", "--help"],
                     ["cache", "--help"], ["version", "--help"],
                     ["cache", "stats", "--help"]):
            r = ratchet(*args)
            self.assertEqual(r.returncode, 0, args)
            self.assertIn(b"usage: ratchet", r.stdout, args)
            self.assertEqual(r.stderr, b"", args)
        r = ratchet("run", "--help")
        for flag in (b"--jobs", b"--retries", b"--backoff", b"--jitter",
                     b"--timeout", b"--kill-grace", b"--breaker", b"--halt",
                     b"--cache", b"--cache-env", b"--cache-ttl", b"--joblog",
                     b"--resume", b"--resume-failed", b"--dead-letter",
                     b"--json", b"--progress", b"--quiet", b"--keep-order",
                     b"--tag", b"--shell", b"--null", b"--arg-file",
                     b"--colsep", b"--link",
                     b"--plugin", b"--kind", b"--config"):
            self.assertIn(flag, r.stdout)

    def test_bad_usage_exits_255_naming_it(self):
        cases = [
            ([], b"usage: ratchet"),
            (["frobnicate"], b"unknown command 'frobnicate'"),
            (["help", "nope"], b"unknown command 'nope'"),
            (["version", "extra"], b"unexpected argument 'extra'"),
            (["run", "--bogus", "echo"], b"unknown option '--bogus'"),
            (["run", "-Q", "echo"], b"unknown option '-Q'"),
            (["run", "-j", "zero", "echo"], b"-j: invalid value 'zero'"),
            (["run", "--jobs"], b"--jobs needs a value"),
            (["run", "--retries", "x", "echo"], b"--retries: invalid number 'x'"),
            (["run", "--timeout", "5x", "echo"], b"--timeout: invalid duration '5x'"),
            (["run", "--kill-grace", "-1", "echo"], b"--kill-grace: invalid duration '-1'"),
            (["run", "--backoff", "fib", "echo"], b"--backoff: invalid backoff 'fib'"),
            (["run", "--backoff-base", "1m", "--backoff-max", "1s", "echo"],
             b"--backoff-max (1s) is shorter than --backoff-base (1m)"),
            (["run", "--jitter", "lots", "echo"], b"--jitter: invalid jitter 'lots'"),
            (["run", "--breaker", "rate=0%", "echo"], b"--breaker rate"),
            (["run", "--breaker", "mode=panic", "echo"], b"invalid mode 'panic'"),
            (["run", "--halt", "now,fail=x", "echo"], b"--halt: invalid value 'now,fail=x'"),
            (["run", "--cache-ttl", "1h", "echo"], b"--cache-ttl needs --cache"),
            (["run", "--cache", "--cache-env", "A-B", "echo"], b"--cache-env: 'A-B'"),
            (["run", "--resume", "echo"], b"--resume needs --joblog"),
            (["run", "--output-buffer", "12Q", "echo"], b"--output-buffer: invalid size '12Q'"),
            (["run", "--json=1", "echo"], b"--json takes no value"),
            (["run", "--plugin", "x.so", "echo"], b"--plugin needs --kind"),
            (["run", ":::", "a"], b"no COMMAND given"),
            (["run", "echo", ":::+", "b"], b"':::+' links its list"),
            (["run", "--config", "/nonexistent.conf", "echo"],
             b"--config: cannot open '/nonexistent.conf'"),
            (["run", "--timeout", "1\x1b[31m", "echo"], b"'1\\x1b[31m'"),
            (["worker", "--bogus"], b"unknown option '--bogus'"),
            (["worker", "extra"], b"unexpected argument 'extra'"),
            (["cache"], b"missing command"),
            (["cache", "purge"], b"unknown command 'purge'"),
            (["cache", "--size", "1", "stats"], b"unknown option '--size'"),
            (["cache", "stats", "extra"], b"unexpected argument 'extra'"),
            (["cache", "explain"], b"expected one NAME or KEY"),
            (["cache", "--dir=", "stats"], b"--dir: the path is empty"),
        ]
        for args, needle in cases:
            r = ratchet(*args)
            self.assertEqual(r.returncode, 255, (args, r.stderr))
            self.assertIn(needle, r.stderr, args)
            self.assertEqual(r.stdout, b"", args)
            self.assertEqual(r.stderr.count(b"\n"), 1 if args else
                             r.stderr.count(b"\n"), args)

    def test_config_errors_name_file_and_line(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf",
                                         delete=False) as f:
            f.write("# defaults\njobs = 2\n\ntimeout = forever\n")
        try:
            r = ratchet("run", "--config", f.name, "echo")
            self.assertEqual(r.returncode, 255)
            self.assertIn(("%s:4: --timeout: invalid duration 'forever'"
                           % f.name).encode(), r.stderr)
        finally:
            os.unlink(f.name)

    def test_run_runs(self):
        r = ratchet("run", "echo", ":::", "a")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a\n")

    def test_dry_run(self):
        r = ratchet("run", "--dry-run", "convert", "{}", "{/.}.png", ":::",
                    "a/b.jpg", "it's here.jpg", "$(reboot)")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(), [
            "convert a/b.jpg b.png",
            "convert 'it'\\''s here.jpg' 'it'\\''s here.png'",
            "convert '$(reboot)' '$(reboot).png'",
        ])
        r = ratchet("run", "--dry-run", "wc -l < {} # {#}",
                    stdin=b"x y\n$HOME\n")
        self.assertEqual(r.stdout, b"wc -l < 'x y' # 1\nwc -l < '$HOME' # 2\n")
        r = ratchet("run", "--dry-run", "-0", "echo", stdin=b"a\nb\0c\0")
        self.assertEqual(r.stdout, b"echo 'a\nb'\necho c\n")
        r = ratchet("run", "--dry-run", "--plugin", "p.so", "--kind", "up",
                    ":::", "x")
        self.assertEqual(r.stdout, b"up x\n")

    def test_dry_run_resume_skips_logged_tasks(self):
        d = tempfile.mkdtemp()
        try:
            log = os.path.join(d, "log.tsv")
            with open(log, "w") as f:
                f.write("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\t"
                        "Exitval\tSignal\tCommand\tAttempts\tCached\n")
                f.write("1\t:\t1.000\t0.001\t0\t0\t0\t0\techo a\t1\t0\n")
                f.write("2\t:\t1.000\t0.001\t0\t0\t1\t0\techo b\t1\t0\n")
                f.write("3\t:\t1.000\t0.0")  # cut short by a kill -9
            args = ["run", "--dry-run", "--joblog", log]
            r = ratchet(*args, "--resume", "echo", ":::", "a", "b", "c", "d")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"echo c\necho d\n")
            r = ratchet(*args, "--resume-failed", "echo", ":::", "a", "b",
                        "c", "d")
            self.assertEqual(r.stdout, b"echo b\necho c\necho d\n")
            with open(log, "a") as f:
                f.write("\ngarbage\n4\t:\t1\t1\t0\t0\t0\t0\tx\t1\t0\n")
            r = ratchet(*args, "--resume", "echo", ":::", "a")
            self.assertEqual(r.returncode, 255)
            self.assertIn(b"not a job log line", r.stderr)
        finally:
            shutil.rmtree(d)


class Cache(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.store = os.path.join(self.dir, "store")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def cache(self, *args):
        return ratchet("cache", "--dir", self.store, *args)

    def test_no_store(self):
        r = self.cache("stats")
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"no cache in", r.stdout)
        self.assertFalse(os.path.exists(self.store))
        r = self.cache("explain", "x")
        self.assertEqual(r.returncode, 1)

    def test_default_dir_from_xdg(self):
        env = dict(os.environ, XDG_CACHE_HOME=self.dir)
        r = ratchet("cache", "stats", env=env)
        self.assertEqual(r.returncode, 0)
        self.assertIn(os.path.join(self.dir, "ratchet", "store").encode(),
                      r.stdout)
        env = {"PATH": os.environ.get("PATH", "")}
        r = ratchet("cache", "stats", env=env)
        self.assertEqual(r.returncode, 255)
        self.assertIn(b"no default cache directory", r.stderr)

    def test_subcommands(self):
        made = subprocess.run([ARGS.test_cli, "--child", "make-store",
                               self.store], capture_output=True, check=True)
        key = made.stdout.decode().strip()
        r = self.cache("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout.decode(), r"entries\s+3\n")
        r = self.cache("explain", "task-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertIn("task 'task-1': last key %s, cached" % key, out)
        self.assertRegex(out, r"env\s+CC")
        self.assertRegex(out, r"kind\s+-")
        r = self.cache("explain", key)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("key %s: cached" % key, r.stdout.decode())
        r = self.cache("explain", "task-9")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no key was ever stored", r.stdout)
        r = self.cache("explain", "0" * 32)
        self.assertEqual(r.returncode, 1)
        r = self.cache("verify")
        self.assertEqual((r.returncode, r.stdout), (0, b"all entries are intact\n"))
        r = self.cache("gc")
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"removed 0 expired", r.stdout)
        r = self.cache("clear")
        self.assertEqual((r.returncode, r.stdout), (0, b"removed 3 entries\n"))
        r = self.cache("stats")
        self.assertRegex(r.stdout.decode(), r"entries\s+0\n")

    def test_damaged_store(self):
        os.makedirs(self.store)
        with open(os.path.join(self.store, "data.mdb"), "wb") as f:
            f.write(b"not lmdb" * 8192)
        r = self.cache("stats")
        self.assertEqual(r.returncode, 1)
        self.assertIn(self.store.encode(), r.stderr)
        self.assertIn(b"ratchet cache clear", r.stderr)
        r = self.cache("verify")
        self.assertEqual(r.returncode, 1)
        # What the message advises works: clear removes the damaged store.
        r = self.cache("clear")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"removed the unreadable cache store", r.stdout)
        r = self.cache("stats")
        self.assertEqual((r.returncode, r.stdout[:11]), (0, b"no cache in"))


# ---- the orchestrator's side -------------------------------------------

class WorkerProtocol(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.env = dict(os.environ, TMPDIR=self.tmp)
        self.w = Worker(env=self.env)
        self.ready = self.w.hello()

    def tearDown(self):
        status, err = self.w.close()
        self.assertEqual(status, 0, err)
        # Spill files never outlive a task here: the Result carried them.
        self.assertEqual(os.listdir(self.tmp), [])
        shutil.rmtree(self.tmp)

    def run_exec(self, argv, deadline_ms=0, **kw):
        self.w.task("exec", exec_payload(argv, **kw), deadline_ms)
        return self.w.result()

    def test_ready_and_echo(self):
        self.assertEqual(list(self.ready.kinds), ["exec", "echo"])
        self.assertEqual(self.ready.worker_name, "ratchet")
        payload = bytes(range(256)) * 10
        self.w.task("echo", payload)
        r = self.w.result()
        self.assertEqual(r.status, pb.STATUS_OK)
        self.assertEqual(r.output, payload)
        self.w.task("nope", b"")
        self.assertEqual(self.w.result().status, pb.STATUS_UNKNOWN_KIND)

    def test_exec_ok_and_stdin_env_cwd(self):
        r = self.run_exec(["sh", "-c", "cat; echo \"$X\"; pwd"],
                          stdin=b"in:", env={"X": "y z"}, cwd="/")
        self.assertEqual(r.status, pb.STATUS_OK, r.error)
        self.assertEqual(r.output, b"in:y z\n/\n")
        self.assertEqual(r.exit_code, 0)
        self.assertGreater(r.usage.wall_us, 0)
        r = self.run_exec(['printf "%s|" "$1" "$2"', "a b", "it's"],
                          use_shell=True)
        self.assertEqual(r.output, b"a b|it's|")

    def test_exec_big_outputs(self):
        r = self.run_exec(["head -c 10485760 /dev/zero >&2 & "
                           "head -c 10485760 /dev/urandom; wait"],
                          use_shell=True)
        self.assertEqual(r.status, pb.STATUS_OK, r.error)
        self.assertEqual(len(r.output), 10 << 20)
        # stderr travels once the runtime can set it (cmd_worker.c).
        self.assertIn(r.stderr, (b"", b"\0" * (10 << 20)))

    def test_exec_spill(self):
        r = self.run_exec(["seq 1 3000000"], use_shell=True,
                          max_memory_output=65536)
        self.assertEqual(r.status, pb.STATUS_OK, r.error)
        if r.stdout_path:
            with open(r.stdout_path, "rb") as f:
                out = f.read()
            os.unlink(r.stdout_path)
        else:
            out = r.output
        self.assertEqual(out, b"".join(b"%d\n" % i
                                       for i in range(1, 3000001)))
        r = self.run_exec(["head -c 200000 /dev/zero >&2; exit 4"],
                          use_shell=True, max_memory_output=65536)
        self.assertEqual((r.status, r.exit_code), (pb.STATUS_FAILED, 4))
        if r.stderr_path:
            self.assertEqual(r.stderr, b"")
            self.assertEqual(os.path.getsize(r.stderr_path), 200000)
            os.unlink(r.stderr_path)

    def test_exec_failures(self):
        r = self.run_exec(["sh", "-c", "echo oops >&2; exit 3"])
        self.assertEqual(r.status, pb.STATUS_FAILED)
        self.assertEqual(r.exit_code, 3)
        self.assertIn("exit status 3", r.error)
        self.assertIn("oops", r.error)
        r = self.run_exec(["sh", "-c", "kill -TERM $$"])
        self.assertEqual(r.status, pb.STATUS_FAILED)
        self.assertEqual(r.signal, signal.SIGTERM)
        self.assertEqual(r.exit_code, 128 + signal.SIGTERM)
        r = self.run_exec(["/nonexistent/cmd"])
        self.assertEqual(r.status, pb.STATUS_FAILED)
        self.assertEqual(r.exit_code, 127)
        if not WRAP:  # under valgrind, posix_spawn reports only the 127
            self.assertIn("cannot run '/nonexistent/cmd'", r.error)
        self.w.task("exec", b"\xff\xff\xff")
        self.assertEqual(self.w.result().status, pb.STATUS_BAD_REQUEST)
        r = self.run_exec([])
        self.assertEqual(r.status, pb.STATUS_BAD_REQUEST)

    def test_deadline_kills_process_group(self):
        pidfile = os.path.join(self.tmp, "pid")
        deadline = int(time.time() * 1000) + 300
        t0 = time.monotonic()
        r = self.run_exec(["echo $$ > %s; sleep 30 & sleep 30; wait"
                           % pidfile], deadline_ms=deadline, use_shell=True,
                          kill_grace_ms=300)
        took = time.monotonic() - t0
        pgid = int(read_text(pidfile))
        os.unlink(pidfile)
        self.assertEqual(r.status, pb.STATUS_TIMEOUT, r.error)
        self.assertLess(took, 5)
        self.assertTrue(group_gone(pgid))

    def test_cancel_kills_process_group(self):
        pidfile = os.path.join(self.tmp, "pid")
        tid = self.w.task("exec", exec_payload(
            ["trap '' TERM; echo $$ > %s; sleep 30 & sleep 30; wait"
             % pidfile], use_shell=True, kill_grace_ms=200))
        pgid = int(wait_for_file(pidfile))
        os.unlink(pidfile)
        self.w.send(cancel=pb.Cancel(id=tid))
        r = self.w.result()
        self.assertEqual(r.status, pb.STATUS_CANCELLED, r.error)
        self.assertEqual(r.signal, signal.SIGKILL)
        self.assertTrue(group_gone(pgid))

    def test_orphan_left_by_command_is_ended(self):
        pidfile = os.path.join(self.tmp, "pid")
        r = self.run_exec(["sleep 30 & echo $! > %s" % pidfile],
                          use_shell=True, kill_grace_ms=200)
        self.assertEqual(r.status, pb.STATUS_OK, r.error)
        bg = int(read_text(pidfile))
        os.unlink(pidfile)
        with self.assertRaises(ProcessLookupError):
            os.kill(bg, 0)


class Plugins(unittest.TestCase):

    def test_plugin_kinds(self):
        w = Worker("--plugin", ARGS.plugin)
        ready = w.hello()
        self.assertEqual(list(ready.kinds),
                         ["exec", "echo", "upper", "upper-slow"])
        w.task("upper", b"hello, world")
        r = w.result()
        self.assertEqual((r.status, r.output), (pb.STATUS_OK, b"HELLO, WORLD"))
        tid = w.task("upper-slow", b"")
        w.send(cancel=pb.Cancel(id=tid))
        self.assertEqual(w.result().status, pb.STATUS_CANCELLED)
        w.send(shutdown=pb.Shutdown(grace_ms=0))
        status, err = w.close()
        self.assertEqual(status, 0, err)

    def test_abi_mismatch_is_refused(self):
        r = ratchet("worker", "--plugin", ARGS.plugin_abi99, stdin=b"")
        self.assertEqual(r.returncode, 111)
        self.assertIn(b"built for plugin ABI 99, this ratchet speaks ABI 1",
                      r.stderr)
        self.assertIn(ARGS.plugin_abi99.encode(), r.stderr)

    def test_bad_plugins(self):
        r = ratchet("worker", "--plugin", "/nonexistent/p.so", stdin=b"")
        self.assertEqual(r.returncode, 111)
        self.assertIn(b"cannot load '/nonexistent/p.so'", r.stderr)
        with tempfile.NamedTemporaryFile(suffix=".so") as f:
            f.write(b"not an ELF file")
            f.flush()
            r = ratchet("worker", "--plugin", f.name, stdin=b"")
            self.assertEqual(r.returncode, 111)
            self.assertIn(b"cannot load", r.stderr)
        # A shared object that is not a plugin: the C library.
        r = ratchet("worker", "--plugin", "/lib/x86_64-linux-gnu/libm.so.6",
                    stdin=b"")
        self.assertEqual(r.returncode, 111)
        self.assertIn(b"is not a ratchet plugin", r.stderr)
        # Two plugins registering the same kinds: the second is refused.
        r = ratchet("worker", "--plugin", ARGS.plugin, "--plugin",
                    ARGS.plugin, stdin=b"")
        self.assertEqual(r.returncode, 111)
        self.assertIn(b"refused to load", r.stderr)


def main():
    global ARGS, pb, WRAP
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratchet", required=True)
    ap.add_argument("--pb2-dir", required=True)
    ap.add_argument("--plugin", required=True)
    ap.add_argument("--plugin-abi99", required=True)
    ap.add_argument("--test-cli", default=None)
    ap.add_argument("--wrap", default="",
                    help="a command to run ratchet under, e.g. valgrind")
    ARGS, rest = ap.parse_known_args()
    WRAP = ARGS.wrap.split()
    if ARGS.test_cli is None:
        ARGS.test_cli = os.path.join(os.path.dirname(ARGS.plugin), "test-cli")
    sys.path.insert(0, ARGS.pb2_dir)
    import ratchet_pb2
    pb = ratchet_pb2
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
