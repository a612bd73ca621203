#!/usr/bin/python3
"""test_run.py - integration tests of `ratchet run` executing tasks.

Drives the built binary as a user does: inputs of every source and shape
reaching the command intact, output never interleaved (-k, --tag, --json,
10 MB per task), exit statuses (0, N failed, 101, 130, 143, 255), every
policy option (--retries, --timeout, --halt, --breaker, --cache, --joblog,
--resume after kill -9, --dead-letter), signals with no process left
behind, and chaos (workers SIGKILLed every 100 ms).

Run by ctest (tests/cli/CMakeLists.txt) as
  test_run.py --ratchet PATH --plugin SO
"""

import argparse
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None


def ratchet(*args, stdin=None, env=None, timeout=120):
    return subprocess.run([ARGS.ratchet, *args], input=stdin,
                          capture_output=True, env=env, timeout=timeout)


def start(*args, **kw):
    return subprocess.Popen([ARGS.ratchet, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kw)


# ---- processes ---------------------------------------------------------

def proc_table():
    """pid -> (ppid, pgid, cmdline) of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = st[st.rindex(")") + 2:].split()
        if rest[0] == "Z":
            continue
        out[int(d)] = (int(rest[1]), int(rest[2]), cmd)
    return out


def descendants(root):
    """The pids below root and the process groups they lead or sit in."""
    t = proc_table()
    pids, frontier = set(), {root}
    while frontier:
        nxt = {p for p, (pp, _, _) in t.items() if pp in frontier} - pids
        pids |= nxt
        frontier = nxt
    return pids, {t[p][1] for p in pids if p in t} - {os.getpgrp()}


def survivors(pids, pgids, marker):
    """Processes still alive that were ours: a recorded pid with the marker
    in its command line, or any process in one of our process groups."""
    t = proc_table()
    return [(p, c) for p, (_, g, c) in t.items()
            if (p in pids and marker in c) or g in pgids]


def wait_gone(pids, pgids, marker, timeout=10.0):
    end = time.monotonic() + timeout
    left = survivors(pids, pgids, marker)
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = survivors(pids, pgids, marker)
    return left


def read_until(f, token, timeout=60.0):
    """Bytes read from unbuffered pipe f until they hold token, or what
    came within timeout (the caller's assertion then shows it)."""
    got = b""
    end = time.monotonic() + timeout
    while token not in got and time.monotonic() < end:
        if select.select([f], [], [], 0.5)[0]:
            chunk = os.read(f.fileno(), 65536)
            if not chunk:
                break
            got += chunk
    return got


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


class Base(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ratchet-run-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text, mode=0o644):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p


# ---- inputs and commands -----------------------------------------------

class Inputs(Base):

    def test_list_stdin_file_and_placeholders(self):
        r = ratchet("run", "-k", "echo", "{}", "{.}", "{/}", "{//}", "{/.}",
                    "{#}", ":::", "a/b.tar.gz", "c")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(), [
            "a/b.tar.gz a/b.tar b.tar.gz a b.tar 1", "c c c . c 2"])
        r = ratchet("run", "-k", "echo", stdin=b"x\ny\n\nz")
        self.assertEqual(r.stdout, b"x\ny\n\nz\n")
        f = self.write("in.txt", "1\n2\n3\n")
        r = ratchet("run", "-k", "-a", f, "echo", "n")
        self.assertEqual(r.stdout, b"n 1\nn 2\nn 3\n")

    def test_inputs_reach_the_command_intact(self):
        marker = self.path("pwned")
        nasty = ["a b", "it's", '"dq"', "$(touch %s)" % marker,
                 "`touch %s`" % marker, "x; touch %s" % marker, "*", "~",
                 "a|b&c>d<e", "tab\there", "back\\slash", "-n", "ünï"]
        r = ratchet("run", "-k", "printf", "%s\\n", ":::", *nasty)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(), nasty)
        # Through a shell (the template has shell syntax): quoted.
        r = ratchet("run", "-k", "printf '%s\\n' {} | cat", ":::", *nasty)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(), nasty)
        r = ratchet("run", "-k", "--shell", "printf", "'<%s>\\n'", ":::",
                    *nasty)
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["<%s>" % n for n in nasty])
        self.assertFalse(os.path.exists(marker))

    def test_slow_stdin_does_not_stall_the_run(self):
        # A producer that writes one line and then waits (tail -f, a
        # queue): the line's task runs and its output is printed while
        # stdin is still open; a timeout is enforced meanwhile too. The
        # next line is only written once the previous output was seen.
        p = subprocess.Popen([ARGS.ratchet, "run", "--timeout", "2s",
                              "sh", "-c", 'echo "got $0"; [ "$0" != slow ] '
                              '|| sleep 30'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, bufsize=0)
        try:
            p.stdin.write(b"first\n")
            self.assertEqual(read_until(p.stdout, b"\n"), b"got first\n")
            p.stdin.write(b"slow\n")
            self.assertEqual(read_until(p.stdout, b"\n"), b"got slow\n")
            # Its timeout ends it while stdin stays open: the failure is
            # reported now, not when the input ends.
            err = read_until(p.stderr, b"timed out")
            self.assertIn(b"timed out", err)
            out, rest = p.communicate(input=b"last\n", timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.assertEqual(out, b"got last\n")
        self.assertEqual(p.returncode, 1, err + rest)

    def test_several_lists_and_columns(self):
        # GNU parallel's combinations: the last list varies fastest.
        r = ratchet("run", "-k", "echo", "{2}-{1}", ":::", "a", "b c", ":::",
                    "1", "2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["1-a", "2-a", "1-b c", "2-b c"])
        # :::+ goes side by side as far as the shortest list; without a
        # placeholder each value is an argument of its own, and so is each
        # value of an argument that is exactly {}.
        r = ratchet("run", "-k", "printf", "[%s]", ":::", "x", "y", "z",
                    ":::+", "1 1", "2")
        self.assertEqual(r.stdout, b"[x][1 1][y][2]")
        # --link: as far as the longest, the shorter lists starting over.
        r = ratchet("run", "-k", "--link", "printf", "[%s%s]", ":::", "x",
                    "y", "z", ":::", "1", "2")
        self.assertEqual(r.stdout, b"[x1][y2][z1]")
        r = ratchet("run", "-k", "printf", "<%s>", "{}", ":::", "a b", ":::",
                    "c")
        self.assertEqual(r.stdout, b"<a b><c>")
        # --colsep cuts each line of stdin into values.
        r = ratchet("run", "-k", "--colsep", "\\t", "echo", "{3}:{1}:{}",
                    stdin=b"a\tb\tc\nd\te\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"c:a:a b c\n:d:d e\n")
        # The shell's ${1} is not a placeholder: the input is appended.
        r = ratchet("run", "-k", "sh", "-c", 'echo "got ${1}"', "_", ":::",
                    'x"; echo INJECTED; "')
        self.assertEqual(r.stdout, b'got x"; echo INJECTED; "\n')
        # Through a shell every value is quoted, and the cache tells the
        # combinations apart.
        cache = self.path("cache")
        args = ["run", "-k", "--cache=" + cache, "--json",
                "echo {1} {2} > /dev/null; echo $#", ":::", "a b", ":::",
                "c", "$(id)"]
        first = [json.loads(x) for x in ratchet(*args).stdout.splitlines()]
        self.assertEqual([x["stdout"] for x in first], ["0\n", "0\n"])
        self.assertEqual([x["input"] for x in first], ["a b c", "a b $(id)"])
        again = [json.loads(x) for x in ratchet(*args).stdout.splitlines()]
        self.assertEqual([x["cached"] for x in again], [True, True])
        r = ratchet("run", "--dry-run", "cp", "{1}", "{2//}/{1/}", ":::",
                    "d/f.txt", ":::", "out/x/y")
        self.assertEqual(r.stdout, b"cp d/f.txt out/x/f.txt\n")

    def test_null_separated_inputs_with_newlines(self):
        r = ratchet("run", "-k", "-0", "printf", "[%s]", stdin=b"a\nb\0c d\0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"[a\nb][c d]")
        # Without -0 a NUL inside a line is refused.
        r = ratchet("run", "echo", stdin=b"a\0b\n")
        self.assertEqual(r.returncode, 255)
        self.assertIn(b"NUL", r.stderr)

    def test_bad_inputs_exit_255(self):
        cases = [
            (["run", "-a", self.path("missing"), "echo"], b"-a: cannot open"),
            (["run", "--dead-letter", self.path("no/dir/dl"), "echo", ":::",
              "x"], b"--dead-letter"),
            (["run", "--cache=/proc/nope", "echo", ":::", "x"], b"--cache"),
            (["run", "--joblog", self.path("no/dir/log"), "echo", ":::",
              "x"], b"--joblog"),
            (["run", "-j", "0", "echo"], b"-j"),
            (["run", "--halt", "sometimes", "echo"], b"--halt"),
        ]
        for args, needle in cases:
            r = ratchet(*args)
            self.assertEqual(r.returncode, 255, (args, r.stderr))
            self.assertIn(needle, r.stderr, args)

    def test_command_that_cannot_run(self):
        r = ratchet("run", self.path("nothing-here"), ":::", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"cannot run", r.stderr)

    def test_config_file(self):
        conf = self.write("r.conf", "# test\njobs = 1\nkeep-order = true\n"
                          "tag = true\n")
        r = ratchet("run", "--config", conf, "echo", ":::", "a", "b")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a\ta\nb\tb\n")


# ---- output ------------------------------------------------------------

class Output(Base):

    def test_keep_order(self):
        r = ratchet("run", "-j4", "-k", "sh", "-c", "sleep $1; echo $1", "_",
                    ":::", "0.4", "0.1", "0.3", "0", "0.2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), [b"0.4", b"0.1", b"0.3", b"0",
                                            b"0.2"])
        r = ratchet("run", "-j4", "sh", "-c", "sleep $1; echo $1", "_",
                    ":::", "0.6", "0")
        self.assertEqual(r.stdout.split(), [b"0", b"0.6"])

    def test_ten_megabytes_per_task_not_interleaved(self):
        script = ("head -c 10485760 /dev/zero | tr '\\0' \"$1\"; "
                  "head -c 1048576 /dev/zero | tr '\\0' \"$1\" >&2")
        for extra in ([], ["-k"]):
            r = ratchet("run", "-j2", *extra, "sh", "-c", script, "_",
                        ":::", "a", "b")
            self.assertEqual(r.returncode, 0, r.stderr[:200])
            out = r.stdout
            self.assertEqual(len(out), 2 * 10485760)
            first = out[:1]
            other = b"b" if first == b"a" else b"a"
            self.assertEqual(out, first * 10485760 + other * 10485760)
            err = r.stderr
            self.assertEqual(len(err), 2 * 1048576)
            self.assertEqual(len(set(err[:1048576])), 1)
            self.assertEqual(len(set(err[1048576:])), 1)
            if extra:
                self.assertEqual(first, b"a")

    def test_tag(self):
        r = ratchet("run", "-k", "--tag", "sh", "-c",
                    "printf 'one\\ntwo'; echo e >&2", "_", ":::", "x y", "z")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"x y\tone\nx y\ttwo\nz\tone\nz\ttwo\n")
        self.assertEqual(r.stderr, b"x y\te\nz\te\n")

    def test_json(self):
        r = ratchet("run", "--json", "-k", "sh", "-c",
                    "echo out $1; echo err >&2; exit $1", "_", ":::", "0",
                    "3")
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = [json.loads(l) for l in r.stdout.decode().splitlines()]
        self.assertEqual(len(lines), 2)
        a, b = lines
        for k in ("seq", "input", "command", "status", "exit", "signal",
                  "attempts", "cached", "duration_ms", "stdout", "stderr"):
            self.assertIn(k, a)
        self.assertEqual((a["seq"], a["input"], a["status"], a["exit"],
                          a["signal"], a["attempts"], a["cached"],
                          a["stdout"], a["stderr"]),
                         (1, "0", "ok", 0, 0, 1, False, "out 0\n", "err\n"))
        self.assertEqual((b["status"], b["exit"]), ("failed", 3))
        self.assertIn("sh -c", a["command"])
        # Bytes that are not UTF-8 still give JSON that parses.
        r = ratchet("run", "--json", "printf", "\\377\\n", ":::", "x")
        self.assertEqual(json.loads(r.stdout)["stdout"], "\ufffd\n")

    def test_progress_and_quiet(self):
        r = ratchet("run", "--progress", "true", ":::", "1", "2", "3")
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"3/3 done, 0 failed", r.stderr)
        r = ratchet("run", "--quiet", "sh", "-c", "kill -9 $$", ":::", "x")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, b"")
        r = ratchet("run", "sh", "-c", "kill -9 $$", ":::", "x")
        self.assertIn(b"signal 9", r.stderr)

    def test_plugin_kind(self):
        r = ratchet("run", "-k", "--plugin", ARGS.plugin, "--kind", "upper",
                    ":::", "ab", "cd")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"AB\nCD\n")

    def test_plugin_pipelined_keeps_order_and_loses_nothing(self):
        # Plugin runs send each worker 16 tasks at a time.
        words = ["w%05d" % i for i in range(5000)]
        r = ratchet("run", "-k", "-j2", "--plugin", ARGS.plugin, "--kind",
                    "upper", stdin="".join(w + "\n" for w in words).encode())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().split("\n")[:-1],
                         [w.upper() for w in words])

    def test_plugin_pipelined_survives_killed_workers(self):
        # A killed worker takes up to 16 queued tasks with it: every one
        # is run again on another worker.
        n = 20000
        # Output goes to files: a full stdout pipe would stop ratchet
        # reading its stdin while we write it.
        out_f = open(self.path("out"), "w+b")
        err_f = open(self.path("err"), "w+b")
        self.addCleanup(out_f.close)
        self.addCleanup(err_f.close)
        p = subprocess.Popen([ARGS.ratchet, "run", "-j2", "--retries", "3",
                              "--plugin", ARGS.plugin, "--kind", "upper"],
                             stdin=subprocess.PIPE, stdout=out_f,
                             stderr=err_f)
        # Inputs trickle in, so that the run lasts long enough to kill.
        kills = 0
        for chunk in range(40):
            p.stdin.write("".join("x%d\n" % i for i in
                                  range(chunk * n // 40,
                                        (chunk + 1) * n // 40)).encode())
            p.stdin.flush()
            if chunk % 8 == 4:
                workers = [pid for pid, (pp, _, c) in proc_table().items()
                           if pp == p.pid and " worker" in c]
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    kills += 1
            time.sleep(0.02)
        p.stdin.close()
        rc = p.wait(timeout=120)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
        self.assertEqual(rc, 0, err)
        self.assertGreater(kills, 0)
        self.assertEqual(sorted(out.decode().split("\n")[:-1]),
                         sorted("X%d" % i for i in range(n)))

    def test_worker_that_never_starts_fails_fast(self):
        t0 = time.monotonic()
        r = ratchet("run", "--plugin", "/lib/x86_64-linux-gnu/libm.so.6",
                    "--kind", "x", ":::", "a", "b", timeout=30)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(r.returncode, 255)
        self.assertIn(b"the workers cannot run", r.stderr)
        self.assertIn(b"is not a ratchet plugin", r.stderr)


# ---- exit statuses and policies ----------------------------------------

class Policies(Base):

    def test_exit_status_counts_failures(self):
        self.assertEqual(ratchet("run", "true", ":::", "a", "b").returncode,
                         0)
        r = ratchet("run", "sh", "-c", "exit $1", "_", ":::", "0", "1", "2",
                    "0", "5")
        self.assertEqual(r.returncode, 3)
        r = ratchet("run", "-j4", "false", stdin=b"x\n" * 150)
        self.assertEqual(r.returncode, 101)

    def test_retries_and_backoff(self):
        flaky = self.write("flaky.sh",
                           "#!/bin/sh\n"
                           "m=\"$1.seen\"\n"
                           "if [ -e \"$m\" ]; then echo ok; exit 0; fi\n"
                           ": > \"$m\"; exit 1\n", 0o755)
        inputs = [self.path("t%d" % i) for i in range(4)]
        r = ratchet("run", "--json", flaky, ":::", *inputs)
        self.assertEqual(r.returncode, 4)
        r = ratchet("run", "--json", "--retries", "2", "--backoff", "constant",
                    "--backoff-base", "20ms", "--jitter", "none", flaky,
                    ":::", *inputs)
        # Every task now succeeds on its first attempt (markers exist).
        self.assertEqual(r.returncode, 0, r.stderr)
        for f in inputs:
            os.unlink(f + ".seen")
        r = ratchet("run", "--json", "--retries", "2", "--backoff", "exp",
                    "--backoff-base", "10ms", "--backoff-max", "50ms",
                    "--jitter", "equal", flaky, ":::", *inputs)
        self.assertEqual(r.returncode, 0, r.stderr)
        for line in r.stdout.decode().splitlines():
            self.assertEqual(json.loads(line)["attempts"], 2)
        r = ratchet("run", "--retries", "2", "--backoff", "decorrelated",
                    "--backoff-base", "10ms", "--backoff-max", "20ms",
                    "--progress", "false", ":::", "x")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"2 retried", r.stderr)

    def test_timeout_kills_the_group(self):
        t0 = time.monotonic()
        r = ratchet("run", "--json", "--timeout", "300ms", "--kill-grace",
                    "200ms", "sh", "-c", "sleep 30 & sleep 30", "_", ":::",
                    "x")
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout)["status"], "timeout")

    def test_halt(self):
        t0 = time.monotonic()
        r = ratchet("run", "-j3", "--halt", "now,fail=1", "sh", "-c",
                    "[ $1 = bad ] && exit 1; sleep 30", "_", ":::", "s1",
                    "bad", "s2")
        self.assertLess(time.monotonic() - t0, 15)
        self.assertGreaterEqual(r.returncode, 1)
        self.assertLessEqual(r.returncode, 3)
        self.assertIn(b"--halt", r.stderr)
        # soon: the running tasks finish, nothing new starts.
        log = self.path("ran")
        r = ratchet("run", "-j1", "--halt", "soon,fail=1", "sh", "-c",
                    "echo $1 >> %s; [ $1 = 2 ] && exit 1; exit 0" % log, "_",
                    ":::", "1", "2", "3", "4")
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(log) as f:
            self.assertEqual(f.read().split(), ["1", "2"])
        # success=N and a percentage.
        r = ratchet("run", "-j1", "--halt", "soon,success=2", "echo",
                    ":::", "1", "2", "3", "4")
        self.assertEqual(r.stdout, b"1\n2\n")
        r = ratchet("run", "-j1", "--halt", "soon,fail=50%", "sh", "-c",
                    "exit $1", "_", ":::", "1", "1", "0", "0", "0", "0")
        self.assertEqual(r.returncode, 2)

    def test_breaker_fails_the_rest_fast(self):
        r = ratchet("run", "-j1", "--json", "--breaker",
                    "rate=50%,window=4,min=4,open=never,mode=fail", "false",
                    stdin=b"x\n" * 20)
        statuses = [json.loads(l)["status"]
                    for l in r.stdout.decode().splitlines()]
        self.assertEqual(len(statuses), 20)
        self.assertEqual(statuses[:4], ["failed"] * 4)
        self.assertIn("rejected", statuses)
        self.assertEqual(r.returncode, 20)

    def test_cache_hits_on_a_second_run(self):
        count = self.path("count")
        cache = self.path("cache")
        cmd = ["sh", "-c", "echo x >> %s; echo out $1; echo err $1 >&2"
               % count, "_"]
        r1 = ratchet("run", "-k", "--cache=" + cache, *cmd, ":::", "a", "b")
        self.assertEqual(r1.returncode, 0, r1.stderr)
        r2 = ratchet("run", "-k", "--json", "--cache=" + cache, *cmd, ":::",
                     "a", "b", "c")
        self.assertEqual(r2.returncode, 0, r2.stderr)
        objs = [json.loads(l) for l in r2.stdout.decode().splitlines()]
        self.assertEqual([o["cached"] for o in objs], [True, True, False])
        self.assertEqual(objs[0]["stdout"], "out a\n")
        self.assertEqual(objs[0]["stderr"], "err a\n")
        with open(count) as f:
            self.assertEqual(len(f.read().split()), 3)
        # --cache-env: a different value is a miss; --cache-ttl expires.
        env = dict(os.environ, MODE="one")
        r = ratchet("run", "--json", "--cache=" + cache, "--cache-env",
                    "MODE", *cmd, ":::", "a", env=env)
        self.assertFalse(json.loads(r.stdout)["cached"])
        r = ratchet("run", "--json", "--cache=" + cache, "--cache-env",
                    "MODE", *cmd, ":::", "a", env=env)
        self.assertTrue(json.loads(r.stdout)["cached"])
        r = ratchet("run", "--json", "--cache=" + cache, "--cache-ttl",
                    "300ms", *cmd, ":::", "ttl")
        time.sleep(0.5)
        r = ratchet("run", "--json", "--cache=" + cache, *cmd, ":::", "ttl")
        self.assertFalse(json.loads(r.stdout)["cached"])
        # Failures are not cached.
        r = ratchet("run", "--cache=" + cache, "false", ":::", "f")
        r = ratchet("run", "--json", "--cache=" + cache, "false", ":::", "f")
        self.assertFalse(json.loads(r.stdout)["cached"])

    def test_joblog_and_resume_failed(self):
        log = self.path("log")
        r = ratchet("run", "-k", "--joblog", log, "sh", "-c", "exit $1", "_",
                    ":::", "0", "1", "0")
        self.assertEqual(r.returncode, 1)
        with open(log) as f:
            rows = [l.split("\t") for l in f.read().splitlines()]
        self.assertEqual(rows[0], ["Seq", "Host", "Starttime", "JobRuntime",
                                   "Send", "Receive", "Exitval", "Signal",
                                   "Command", "Attempts", "Cached"])
        self.assertEqual(sorted(int(r[0]) for r in rows[1:]), [1, 2, 3])
        by_seq = {int(r[0]): r for r in rows[1:]}
        self.assertEqual(by_seq[2][6], "1")
        self.assertEqual(by_seq[1][8], "sh -c 'exit $1' _ 0")
        ran = self.path("ran")
        r = ratchet("run", "--joblog", log, "--resume-failed", "sh", "-c",
                    "echo $1 >> %s" % ran, "_", ":::", "0", "1", "0")
        with open(ran) as f:
            self.assertEqual(f.read().split(), ["1"])
        r = ratchet("run", "--joblog", log, "--resume", "sh", "-c",
                    "echo $1 >> %s" % ran, "_", ":::", "0", "1", "0", "9")
        with open(ran) as f:
            self.assertEqual(f.read().split(), ["1", "9"])

    def test_resume_after_kill_9(self):
        log = self.path("log")
        ran = self.path("ran")
        inputs = "".join("%d\n" % i for i in range(1, 41)).encode()
        cmd = ["sh", "-c", "echo $1 >> %s; sleep 0.1" % ran, "_"]
        p = subprocess.Popen([ARGS.ratchet, "run", "-j2", "--joblog", log,
                              *cmd], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        p.stdin.write(inputs)
        p.stdin.close()
        self.assertTrue(wait_for(lambda: os.path.exists(log) and
                                 os.path.getsize(log) > 200))
        time.sleep(0.3)
        p.kill()
        p.wait()
        with open(log, "rb") as f:
            data = f.read()
        done = set()
        for line in data.split(b"\n")[1:]:
            fields = line.split(b"\t")
            if len(fields) == 11:
                done.add(int(fields[0]))
        self.assertTrue(0 < len(done) < 40, done)
        # Simulate a line cut short by the kill as well.
        with open(log, "ab") as f:
            f.write(b"39\t:\t1.0")
        time.sleep(0.5)  # the orphaned tasks die with their workers
        open(ran, "w").close()
        r = ratchet("run", "-j2", "--joblog", log, "--resume", *cmd,
                    stdin=inputs)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(ran) as f:
            rerun = {int(x) for x in f.read().split()}
        self.assertEqual(rerun, set(range(1, 41)) - done)
        with open(log) as f:
            seqs = [int(l.split("\t")[0]) for l in f.read().splitlines()[1:]]
        self.assertEqual(sorted(seqs), list(range(1, 41)))

    def test_dead_letter(self):
        dl = self.path("dead.jsonl")
        r = ratchet("run", "--dead-letter", dl, "sh", "-c", "exit $1", "_",
                    ":::", "0", "4")
        self.assertEqual(r.returncode, 1)
        with open(dl) as f:
            lines = [json.loads(l) for l in f.read().splitlines()]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["status"], "failed")


# ---- signals and chaos -------------------------------------------------

class Signals(Base):

    def run_and_signal(self, sig, expect, second=None):
        marker = "ratchet-sig-%d-%d" % (os.getpid(), random.randint(0, 1e9))
        p = start("run", "-j2", "sh", "-c",
                  "sleep 60 & sleep 60; wait; : %s" % marker, "_", ":::",
                  "1", "2", "3", "4")
        self.assertTrue(wait_for(lambda: len(
            [1 for _, (_, _, c) in proc_table().items()
             if c.startswith("sleep 60")]) >= 4 or
            len(descendants(p.pid)[0]) >= 8))
        time.sleep(0.3)
        pids, pgids = descendants(p.pid)
        self.assertGreaterEqual(len(pids), 6)
        t0 = time.monotonic()
        p.send_signal(sig)
        if second is not None:
            time.sleep(0.2)
            p.send_signal(second)
        out, err = p.communicate(timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(p.returncode, expect, err)
        left = wait_gone(pids, pgids, "sleep 60", timeout=5)
        self.assertEqual(left, [])
        left = [c for c in (v[2] for v in proc_table().values())
                if marker in c]
        self.assertEqual(left, [])
        return elapsed

    def test_sigint(self):
        # The default kill grace (2 s) passes, then the groups are killed.
        elapsed = self.run_and_signal(signal.SIGINT, 130)
        self.assertGreater(elapsed, 1.5)

    def test_sigterm(self):
        self.run_and_signal(signal.SIGTERM, 143)

    def test_second_sigint_kills_at_once(self):
        elapsed = self.run_and_signal(signal.SIGINT, 130, signal.SIGINT)
        self.assertLess(elapsed, 1.8)

    def test_sigint_lets_quick_tasks_finish(self):
        # Signalled once both first tasks run (not after a fixed delay,
        # which a slow sanitizer build may not have reached).
        t = "0.%06d" % random.randint(500000, 999999)
        p = start("run", "-j2", "-k", "sh", "-c", "sleep %s; echo $1" % t,
                  "_", ":::", "a", "b", "c", "d")
        self.assertTrue(wait_for(lambda: len(
            [1 for _, (_, _, c) in proc_table().items()
             if c.startswith("sleep " + t)]) >= 2))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 130)
        self.assertEqual(out, b"a\nb\n")

    def test_sigkill_of_ratchet_leaves_nothing(self):
        p = start("run", "-j2", "sleep", "60", ":::", "1", "2", "3")
        self.assertTrue(wait_for(
            lambda: len(descendants(p.pid)[0]) >= 4))
        pids, pgids = descendants(p.pid)
        p.kill()
        p.wait()
        left = wait_gone(pids, pgids, "", timeout=5)
        self.assertEqual(left, [])

    def test_chaos_workers_killed_every_100ms(self):
        n = 200
        p = subprocess.Popen([ARGS.ratchet, "run", "-j2", "--retries", "3",
                              "--json", "sh", "-c", "sleep 0.01; echo $1",
                              "_"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write("".join("%d\n" % i for i in range(n)).encode())
        p.stdin.close()
        kills = 0
        while p.poll() is None:
            # Workers running a task: a worker killed again and again
            # while it starts is one that cannot start, which ends the run
            # by design (flap limit) - and on a loaded machine under ASan
            # starting takes longer than 100 ms.
            t = proc_table()
            busy = {pp for pp, _, _ in t.values()}
            workers = [pid for pid, (pp, _, c) in t.items()
                       if pp == p.pid and " worker" in c and pid in busy]
            if workers:
                try:
                    os.kill(random.choice(workers), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        out = p.stdout.read()
        err = p.stderr.read()
        self.assertEqual(p.wait(), 0, err)
        objs = [json.loads(l) for l in out.decode().splitlines()]
        self.assertEqual(sorted(int(o["input"]) for o in objs),
                         list(range(n)))
        self.assertTrue(all(o["status"] == "ok" for o in objs))
        self.assertGreater(kills, 5)


# ---- no process left behind: the janitor ---------------------------------

RUN_ID = "RATCHET_RUN_ID"


def environ_of(pid):
    """The environment of pid as a dict, or None if it cannot be read."""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for entry in raw.split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if eq and name.decode(errors="replace") not in env:
            env[name.decode(errors="replace")] = value.decode(
                errors="replace")
    return env


def marked(run_id):
    """Live processes whose marker lists run_id."""
    out = []
    for pid, (_, _, cmd) in proc_table().items():
        env = environ_of(pid)
        if env is not None and run_id in env.get(RUN_ID, "").split(":"):
            out.append((pid, cmd))
    return out


def janitors():
    out = set()
    for pid in proc_table():
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "ratchet-janitor":
                    out.add(pid)
        except OSError:
            pass
    return out


def with_token(token):
    """Live processes with token in their command line, but janitors: a
    janitor is a fork of ratchet and shows its command line while it ends
    (the tests check separately that it goes)."""
    skip = janitors()
    return [(p, c) for p, (_, _, c) in proc_table().items()
            if token in c and p not in skip]


def stat_of(pid):
    """(state, ppid, pgid, sid) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    rest = st[st.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[3])


def janitor_of(ratchet_pid):
    for pid, (pp, _, _) in proc_table().items():
        if pp != ratchet_pid:
            continue
        try:
            with open("/proc/%d/comm" % pid) as f:
                if f.read().strip() == "ratchet-janitor":
                    return pid
        except OSError:
            pass
    return None


def alive(pid):
    st = stat_of(pid)
    return st is not None and st[0] != "Z"


class Janitor(Base):
    """Whatever the tasks start, and however ratchet ends, nothing of the
    run remains: the janitor SIGKILLs every process that carries the run's
    marker in its environment once ratchet is gone."""

    def token(self):
        # A duration no other process uses: sleep's argument marks ours.
        return "%d.%06d" % (300 + random.randint(0, 99),
                            random.randint(0, 999999))

    def start_run(self, script, inputs, *opts, **kw):
        p = start("run", *opts, "sh", "-c", script, "_", ":::", *inputs,
                  **kw)
        self.addCleanup(self.reap, p)
        return p

    def reap(self, p):
        if p.poll() is None:
            p.kill()
        p.communicate()

    def run_id_of(self, p):
        """The run's id, read from the environment of one of its workers."""
        found = []

        def probe():
            for pid, (pp, _, c) in proc_table().items():
                if pp == p.pid and " worker" in c:
                    env = environ_of(pid) or {}
                    if RUN_ID in env:
                        found.append(env[RUN_ID].split(":")[-1])
                        return True
            return False
        self.assertTrue(wait_for(probe))
        return found[0]

    def assert_all_gone(self, run_id, tokens, timeout=5.0):
        def clean():
            return not marked(run_id) and not any(
                with_token(t) for t in tokens)
        wait_for(clean, timeout)
        self.assertEqual(marked(run_id), [])
        for t in tokens:
            self.assertEqual(with_token(t), [])

    def grandchildren_script(self, t):
        # A background child, a daemon in its own session (which lets go
        # of the output pipes, as daemons do: the task waits for their
        # EOF), and the command itself waiting: three sleeps per task.
        return "sleep %s & setsid sleep %s >/dev/null 2>&1 & sleep %s; " \
               "wait" % (t, t, t)

    def wait_sleeps(self, t, n):
        """Waits until n sleeps of token t run (not just the shells whose
        command lines mention them)."""
        def sleeps():
            return [c for _, c in with_token(t) if c.startswith("sleep " + t)]
        self.assertTrue(wait_for(lambda: len(sleeps()) >= n, 20), sleeps())

    def test_marker_reaches_every_command(self):
        r = ratchet("run", "-k", "sh", "-c", "echo ${%s:-none}" % RUN_ID,
                    ":::", "a", "b")
        self.assertEqual(r.returncode, 0, r.stderr)
        ids = r.stdout.decode().split()
        self.assertEqual(len(ids), 2)
        self.assertEqual(ids[0].split(":")[0], ids[1].split(":")[0])
        # The run's id, then the token of the worker that ran it.
        run_id, worker = ids[0].split(":")
        self.assertRegex(run_id, r"^\d+\.[0-9a-f]{16}$")
        self.assertRegex(worker, r"^%s\+\d+$" % re.escape(run_id))

    def test_janitor_is_detached_and_holds_nothing(self):
        t = self.token()
        p = self.start_run("sleep %s" % t, ["1", "2"], "-j2")
        self.wait_sleeps(t, 2)
        jan = janitor_of(p.pid)
        self.assertIsNotNone(jan)
        _, _, rpgid, rsid = stat_of(p.pid)
        _, _, jpgid, jsid = stat_of(jan)
        self.assertEqual(jsid, jan)  # its own session, so its own group
        self.assertEqual(jpgid, jan)
        self.assertNotEqual(jsid, rsid)
        self.assertNotEqual(jpgid, rpgid)
        fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (jan, fd))
               for fd in os.listdir("/proc/%d/fd" % jan)}
        self.assertEqual(sorted(fds), [0, 1, 2, 3, 4], fds)
        for fd in (0, 1, 2):
            self.assertEqual(fds[fd], "/dev/null")
        for fd in (3, 4):
            self.assertTrue(fds[fd].startswith("pipe:"), fds)
        self.assertEqual(os.readlink("/proc/%d/cwd" % jan), "/")
        # The signals a terminal or a careless kill sends do not end it.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(jan, sig)
        time.sleep(0.2)
        self.assertTrue(alive(jan))
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)
        self.assertEqual(p.returncode, 143)
        self.assertTrue(wait_for(lambda: not alive(jan), 5))

    def test_sigkill_of_ratchet_kills_grandchildren(self):
        t = self.token()
        # A process of ours without the marker: it must survive.
        bystander = subprocess.Popen(["sleep", t + "1"])
        self.addCleanup(bystander.wait)
        self.addCleanup(bystander.kill)
        p = self.start_run(self.grandchildren_script(t), ["1", "2"], "-j2")
        run_id = self.run_id_of(p)
        self.wait_sleeps(t, 6 + 1)
        jan = janitor_of(p.pid)
        p.kill()
        p.wait()
        self.assert_all_gone(run_id, [t + " "])
        self.assertEqual([c for _, c in with_token(t)
                          if c.strip() != "sleep " + t + "1"], [])
        self.assertTrue(wait_for(lambda: not alive(jan), 5))
        self.assertIsNone(bystander.poll())

    def test_sigkill_of_ratchets_process_group(self):
        t = self.token()
        p = self.start_run(self.grandchildren_script(t), ["1", "2"], "-j2",
                           start_new_session=True)
        run_id = self.run_id_of(p)
        self.wait_sleeps(t, 6)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        self.assert_all_gone(run_id, [t])

    def test_sigkill_of_a_worker(self):
        t = self.token()
        # The killed worker's command dies with it (parent-death signal);
        # its children are orphans until the run ends, then swept.
        p = self.start_run("sleep %s & setsid sleep %s >/dev/null 2>&1 & "
                           "sleep 1.5" % (t, t),
                           ["1", "2", "3", "4"], "-j2", "--retries", "2")
        run_id = self.run_id_of(p)
        self.wait_sleeps(t, 4)
        workers = [pid for pid, (pp, _, c) in proc_table().items()
                   if pp == p.pid and " worker" in c]
        self.assertTrue(workers)
        os.kill(workers[0], signal.SIGKILL)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        # Swept before ratchet returned: nothing to wait for.
        self.assertEqual(with_token(t), [])
        self.assertEqual(marked(run_id), [])

    def test_orphans_of_a_killed_worker_end_at_once(self):
        # What a killed worker's task started must not run on beside the
        # task's retry until the run ends: it is ended when the worker's
        # exit is seen. The other worker's task is left alone.
        t = self.token()
        p = self.start_run("sleep %s$1 & setsid sleep %s$1 >/dev/null 2>&1 "
                           "& sleep %s$1; wait" % (t, t, t), ["1", "2"],
                           "-j2", "--retries", "2")
        run_id = self.run_id_of(p)
        self.wait_sleeps(t, 6)
        table = proc_table()
        shell = [pid for pid, (_, _, c) in table.items()
                 if c.startswith("sh -c") and t in c and
                 c.strip().endswith(" _ 1")]
        self.assertEqual(len(shell), 1, table)
        worker = table[shell[0]][0]
        first = [pid for pid, c in with_token(t)
                 if c.strip() == "sleep %s1" % t]
        second = [pid for pid, c in with_token(t)
                  if c.strip() == "sleep %s2" % t]
        self.assertEqual((len(first), len(second)), (3, 3))
        os.kill(worker, signal.SIGKILL)
        self.assertTrue(wait_for(lambda: not any(alive(x) for x in first),
                                 20), [x for x in first if alive(x)])
        self.assertIsNone(p.poll())  # the run goes on
        self.assertTrue(all(alive(x) for x in second))
        p.kill()
        p.wait()
        self.assert_all_gone(run_id, [t])

    def test_normal_exit_kills_what_tasks_left(self):
        t = self.token()
        r = ratchet("run", "-j2", "sh", "-c",
                    "setsid sleep %s >/dev/null 2>&1 & sleep 0.2; "
                    "echo started $1" % t, "_", ":::",
                    "a", "b", timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(r.stdout.decode().splitlines()),
                         ["started a", "started b"])
        self.assertEqual(with_token(t), [])

    def sweep_after_signal(self, sig, expect):
        t = self.token()
        p = self.start_run(self.grandchildren_script(t), ["1", "2"], "-j2",
                           "--kill-grace", "200ms")
        run_id = self.run_id_of(p)
        self.wait_sleeps(t, 6)
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, expect, err)
        self.assertEqual(with_token(t), [])
        self.assertEqual(marked(run_id), [])

    def test_sigint_leaves_nothing(self):
        self.sweep_after_signal(signal.SIGINT, 130)

    def test_sigterm_leaves_nothing(self):
        self.sweep_after_signal(signal.SIGTERM, 143)

    def test_nested_run_killed_with_the_outer_one(self):
        t = self.token()
        inner = "%s run -j1 sh -c '%s' _ ::: x" % (
            ARGS.ratchet, self.grandchildren_script(t))
        p = self.start_run(inner, ["1"], "-j1")
        run_id = self.run_id_of(p)
        self.wait_sleeps(t, 3)
        # The inner run's processes carry both ids, the outer one first.
        ids = [(environ_of(pid) or {}).get(RUN_ID, "")
               for pid, c in with_token(t) if c.startswith("sleep ")]
        self.assertGreaterEqual(len(ids), 3)
        # Each run adds its id, and each worker its own token after it.
        def shape(i):
            tok = i.split(":")
            return (len(tok) == 4 and tok[0] == run_id and
                    re.match(r"^%s\+\d+$" % re.escape(run_id), tok[1]) and
                    tok[2] != run_id and
                    re.match(r"^%s\+\d+$" % re.escape(tok[2]), tok[3]))
        self.assertTrue(all(shape(i) for i in ids), ids)
        p.kill()
        p.wait()
        self.assert_all_gone(run_id, [t])


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratchet", required=True)
    ap.add_argument("--plugin", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
