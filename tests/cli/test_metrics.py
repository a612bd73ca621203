#!/usr/bin/python3
"""test_metrics.py - integration tests of `ratchet run`'s Prometheus metrics.

Drives the built binary as a user does: --metrics-file produces a file that
`promtool check metrics` accepts, with the run's task counts, rewritten
while the run goes and once more at exit (after SIGINT too), replaced
atomically (no temporary file left, mode 0644); --metrics-listen serves
/metrics over HTTP during a run, scraped with urllib; bad flags are refused
with messages that name them.

Run by ctest (tests/cli/CMakeLists.txt) as
  test_metrics.py --ratchet PATH
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

ARGS = None


def ratchet(*args, timeout=120):
    return subprocess.run([ARGS.ratchet, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)


def start(*args):
    return subprocess.Popen([ARGS.ratchet, *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def samples(text):
    """series -> value of every sample line of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        out[series] = float(value)
    return out


def promtool_check(test, text):
    if shutil.which("promtool") is None:
        test.skipTest("promtool not found (Debian package prometheus; "
                      "cmake/install-deps.sh installs it)")
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=60)
    test.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
    test.assertEqual(p.stdout + p.stderr, b"")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completed(s, status, kind="exec"):
    return s.get('ratchet_tasks_completed_total{kind="%s",status="%s"}' %
                 (kind, status))


class MetricsFile(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ratchet-metrics-")
        self.path = os.path.join(self.dir, "ratchet.prom")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def read(self):
        with open(self.path) as f:
            return f.read()

    def test_counts_at_exit(self):
        p = ratchet("run", "-j2", "--metrics-file", self.path, "sh", "-c",
                    "exit $(( {} % 3 == 0 ))", ":::",
                    *[str(i) for i in range(1, 10)])
        self.assertEqual(p.returncode, 3, p.stderr)
        text = self.read()
        promtool_check(self, text)
        s = samples(text)
        self.assertEqual(s['ratchet_tasks_submitted_total{kind="exec"}'], 9)
        self.assertEqual(completed(s, "ok"), 6)
        self.assertEqual(completed(s, "failed"), 3)
        self.assertEqual(s['ratchet_task_attempts_total{kind="exec"}'], 9)
        self.assertEqual(s['ratchet_tasks_in_flight'], 0)
        self.assertEqual(s['ratchet_tasks_queued'], 0)
        self.assertEqual(s['ratchet_worker_starts_total{pool="0"}'], 2)
        self.assertEqual(
            s['ratchet_task_run_seconds_count{kind="exec",status="ok"}'], 6)
        self.assertEqual(
            s['ratchet_task_run_seconds_bucket{kind="exec",status="ok",'
              'le="+Inf"}'], 6)
        # Replaced atomically: nothing else in the directory, readable by
        # the node_exporter user.
        self.assertEqual(os.listdir(self.dir), ["ratchet.prom"])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o644)

    def test_retries_counted(self):
        p = ratchet("run", "-j1", "--retries", "2", "--backoff-base", "1ms",
                    "--backoff-max", "1ms", "--metrics-file", self.path,
                    "false", ":::", "a")
        self.assertEqual(p.returncode, 1, p.stderr)
        s = samples(self.read())
        self.assertEqual(s['ratchet_task_attempts_total{kind="exec"}'], 3)
        self.assertEqual(s['ratchet_task_retries_total{kind="exec"}'], 2)
        self.assertEqual(completed(s, "failed"), 1)

    def test_rewritten_while_running(self):
        p = start("run", "-j1", "--metrics-file", self.path,
                  "--metrics-interval", "100ms", "sleep", ":::",
                  "0.4", "0.4", "0.4", "0.4", "0.4")
        seen = set()
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            try:
                s = samples(self.read())
                seen.add(completed(s, "ok"))
            except (FileNotFoundError, KeyError):
                pass
            time.sleep(0.05)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(completed(samples(self.read()), "ok"), 5)
        # The file was there from the start and grew as tasks ended.
        self.assertIn(0, seen)
        self.assertTrue(seen & {1, 2, 3, 4}, seen)

    def test_final_write_after_sigint(self):
        p = start("run", "-j2", "--kill-grace", "200ms", "--metrics-file",
                  self.path, "--metrics-interval", "100ms", "sleep", ":::",
                  "30", "30", "30", "30", "30")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if samples(self.read())['ratchet_tasks_in_flight'] == 2:
                    break
            except (FileNotFoundError, KeyError):
                pass
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 130, err)
        text = self.read()
        promtool_check(self, text)
        s = samples(text)
        self.assertEqual(s['ratchet_tasks_in_flight'], 0)
        self.assertEqual(completed(s, "ok"), 0)
        ended = sum(v for k, v in s.items()
                    if k.startswith("ratchet_tasks_completed_total"))
        self.assertEqual(ended, s['ratchet_tasks_submitted_total{kind="exec"}'])
        self.assertGreaterEqual(completed(s, "cancelled"), 2)


class MetricsListen(unittest.TestCase):
    def test_scrape_during_run(self):
        port = free_port()
        p = start("run", "-j2", "--metrics-listen", "127.0.0.1:%d" % port,
                  "sleep", ":::", "1", "1", "1", "1")
        url = "http://127.0.0.1:%d/metrics" % port
        body, ctype, running = None, None, False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    self.assertEqual(r.status, 200)
                    ctype = r.headers["Content-Type"]
                    body = r.read().decode()
                if samples(body)["ratchet_tasks_in_flight"] == 2:
                    running = True
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
        self.assertTrue(running, body)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        promtool_check(self, body)
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen("http://127.0.0.1:%d/nope" % port,
                                   timeout=5)
        self.assertEqual(cm.exception.code, 404)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(b"metrics at http://127.0.0.1:%d/metrics" % port, err)
        # Gone with the run.
        with self.assertRaises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=5)

    def test_port_in_use(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            p = ratchet("run", "--metrics-listen", str(port), "true", ":::",
                        "a")
        self.assertEqual(p.returncode, 255)
        self.assertIn(b"--metrics-listen: cannot listen on '%d'" % port,
                      p.stderr)


class MetricsFlags(unittest.TestCase):
    def refused(self, *args, needle):
        p = ratchet("run", *args, "true", ":::", "a")
        self.assertEqual(p.returncode, 255, p.stderr)
        self.assertIn(needle.encode(), p.stderr)

    def test_bad_values(self):
        self.refused("--metrics-listen", "example.com:80",
                     needle="--metrics-listen: invalid address "
                            "'example.com:80'")
        self.refused("--metrics-listen", "127.0.0.1:70000",
                     needle="--metrics-listen: invalid address")
        self.refused("--metrics-file", "m.prom", "--metrics-interval",
                     "10ms", needle="--metrics-interval: '10ms' is too short")
        self.refused("--metrics-interval", "1s",
                     needle="--metrics-interval needs --metrics-file")
        self.refused("--metrics-file", "", needle="--metrics-file: the path "
                                                  "is empty")
        self.refused("--metrics-file", "/nonexistent/dir/m.prom",
                     needle="--metrics-file: cannot write "
                            "'/nonexistent/dir/m.prom'")

    def test_help_lists_flags(self):
        p = ratchet("run", "--help")
        self.assertEqual(p.returncode, 0)
        for flag in (b"--metrics-file", b"--metrics-interval",
                     b"--metrics-listen"):
            self.assertIn(flag, p.stdout + p.stderr)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--ratchet", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
