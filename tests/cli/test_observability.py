#!/usr/bin/python3
"""test_observability.py - integration tests of `ratchet run`'s trace,
HTML report and logs (docs/observability.md).

One known workload runs with --json, so that each task's attempts and
final status are known from the run itself, and the trace and the report
are checked against it:

  ok-N      succeeds at once
  flaky-N   fails (exit 1) the first time, then succeeds: one retry
  bad       always exits 3 after printing HTML to stderr: 3 attempts
  hang      sleeps past --timeout each time: 3 timed-out attempts
  crash     SIGKILLs its own worker the first time: one lost attempt

--trace must be Chrome trace-event JSON with one "X" slice per attempt on
its worker's track, the right statuses and exit codes, and "i" instants
for the retries and the crash. --report must be one self-contained page
(no network, no script) that headless Chromium renders without a console
message. The logs must filter by level, parse as JSON lines carrying task
and worker ids, and never start in the middle of a task's stderr line.

Run by ctest (tests/cli/CMakeLists.txt) as
  test_observability.py --ratchet PATH [--screenshot-out PNG]
"""

import argparse
import collections
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None

WORKLOAD = r"""#!/bin/sh
# The observability tests' task: what it does depends on its input.
m="$MARKS/$1"
case "$1" in
ok-*) echo "ok $1" ;;
flaky-*)
  if [ ! -e "$m" ]; then : > "$m"; echo "not yet $1" >&2; exit 1; fi
  echo "ok $1" ;;
bad) echo "<script>alert('x')</script> & \"quotes\" on bad" >&2; exit 3 ;;
hang) exec sleep 30 ;;
crash)
  if [ ! -e "$m" ]; then : > "$m"; kill -9 $PPID; sleep 5; fi
  echo "ok $1" ;;
partial) printf 'no newline at the end' >&2; exit 1 ;;
esac
"""

INPUTS = ["ok-1", "flaky-1", "ok-2", "bad", "flaky-2", "hang", "ok-3",
          "crash", "flaky-3", "ok-4"]

POLICY = ["-j2", "--retries", "2", "--backoff", "constant",
          "--backoff-base", "20ms", "--jitter", "none", "--timeout", "700ms",
          "--kill-grace", "100ms"]


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Base(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ratchet-obs-")
        self.marks = os.path.join(self.dir, "marks")
        os.mkdir(self.marks)
        self.task = os.path.join(self.dir, "task.sh")
        with open(self.task, "w") as f:
            f.write(WORKLOAD)
        os.chmod(self.task, 0o755)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_ratchet(self, *args, inputs=INPUTS, timeout=120):
        env = dict(os.environ, MARKS=self.marks)
        env.pop("NO_COLOR", None)
        return subprocess.run(
            [ARGS.ratchet, "run", *args, self.task, ":::", *inputs],
            capture_output=True, env=env, timeout=timeout)

    def workload(self, *extra, as_json=True):
        """Runs the workload; returns (result, {input: obj}) with the --json
        objects, or only each input's "seq" without as_json."""
        r = self.run_ratchet(*(["--json"] if as_json else []), *POLICY,
                             *extra)
        # bad and hang fail: exit status 2.
        self.assertEqual(r.returncode, 2, r.stderr.decode())
        if not as_json:
            return r, {inp: {"seq": i + 1} for i, inp in enumerate(INPUTS)}
        objs = [json.loads(l) for l in r.stdout.decode().splitlines()]
        return r, {o["input"]: o for o in objs}


# ---- the trace ---------------------------------------------------------

class Trace(Base):

    def test_slices_match_the_run(self):
        trace = self.path("run.trace.json")
        r, tasks = self.workload("--trace", trace)
        self.assertEqual(set(tasks), set(INPUTS))
        with open(trace) as f:
            doc = json.load(f)
        self.assertIsInstance(doc["traceEvents"], list)
        self.assertEqual(doc["displayTimeUnit"], "ms")
        self.assertEqual(doc["otherData"]["slices_dropped"], 0)
        events = doc["traceEvents"]
        slices = [e for e in events if e["ph"] == "X"]
        instants = [e for e in events if e["ph"] == "i"]
        meta = [e for e in events if e["ph"] == "M"]

        # Worker tracks: pid = pool 0, tid = slot, named "worker N".
        names = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta
                 if e["name"] == "thread_name"}
        self.assertEqual(set(names), {(0, 0), (0, 1)})
        self.assertEqual(names[(0, 1)], "worker 1")
        self.assertIn({"name": "process_name", "ph": "M", "pid": 0,
                       "args": {"name": "pool 0"}}, meta)

        # One slice per attempt, each on a known worker track.
        by_task = collections.defaultdict(list)
        for s in slices:
            self.assertIn((s["pid"], s["tid"]), names)
            self.assertGreaterEqual(s["ts"], 0)
            self.assertGreaterEqual(s["dur"], 0)
            self.assertEqual(s["cat"], "attempt")
            by_task[s["args"]["task"]].append(s)
        for inp, o in tasks.items():
            attempts = sorted(by_task[o["seq"]],
                              key=lambda s: s["args"]["attempt"])
            statuses = [s["args"]["status"] for s in attempts]
            self.assertEqual(len(attempts), o["attempts"], (inp, statuses))
            self.assertTrue(all(inp in s["name"] for s in attempts), inp)
            self.assertEqual(attempts[-1]["args"]["final"], True, inp)
            self.assertTrue(all(not s["args"]["final"]
                                for s in attempts[:-1]), inp)
            # Attempts of one task do not overlap.
            for a, b in zip(attempts, attempts[1:]):
                self.assertLessEqual(a["ts"] + a["dur"], b["ts"] + 1, inp)
            if inp.startswith("ok-"):
                self.assertEqual(statuses, ["ok"])
                self.assertEqual(attempts[0]["args"]["exit"], 0)
            elif inp.startswith("flaky-"):
                self.assertEqual(statuses, ["failed", "ok"])
                self.assertEqual(attempts[0]["args"]["exit"], 1)
            elif inp == "bad":
                self.assertEqual(statuses, ["failed"] * 3)
                self.assertTrue(all(s["args"]["exit"] == 3
                                    for s in attempts))
                self.assertEqual(o["status"], "failed")
            elif inp == "hang":
                self.assertEqual(statuses, ["timeout"] * 3)
                self.assertEqual(o["status"], "timeout")
            elif inp == "crash":
                self.assertEqual(statuses, ["lost", "ok"])
        self.assertEqual(len(slices), sum(len(v) for v in by_task.values()))

        # Instants: a retry for each failed attempt that was retried, the
        # crash (lost) and its worker's exit, on worker tracks.
        kinds = collections.Counter(e["name"] for e in instants)
        self.assertEqual(kinds["retry"], 3 + 2 + 2)
        self.assertEqual(kinds["lost"], 1)
        self.assertGreaterEqual(kinds["worker exited"], 1)
        for e in instants:
            self.assertIn(e["s"], ("t", "p", "g"))
            if e["s"] == "t":
                self.assertIn((e["pid"], e["tid"]), names)
        retried = collections.Counter(e["args"]["task"] for e in instants
                                      if e["name"] == "retry")
        self.assertEqual(retried[tasks["bad"]["seq"]], 2)
        self.assertEqual(retried[tasks["flaky-1"]["seq"]], 1)
        self.assertTrue(all(e["args"]["delay_ms"] == 20 for e in instants
                            if e["name"] == "retry"))

    def test_breaker_changes_are_global_instants(self):
        trace = self.path("breaker.json")
        r = self.run_ratchet("-j1", "--breaker",
                             "rate=50%,window=2,min=2,open=never,mode=fail",
                             "--trace", trace, inputs=["bad"] * 6)
        self.assertEqual(r.returncode, 6, r.stderr)
        with open(trace) as f:
            events = json.load(f)["traceEvents"]
        breaker = [e for e in events if e["ph"] == "i"
                   and e["name"].startswith("breaker")]
        self.assertTrue(breaker, events)
        self.assertEqual(breaker[0]["s"], "g")
        self.assertEqual(breaker[0]["args"]["to"], "OPEN")
        # Only the attempts that ran have slices; rejected tasks have none.
        self.assertEqual(len([e for e in events if e["ph"] == "X"]), 2)
        self.assertIn(b"breaker run: CLOSED -> OPEN", r.stderr)

    def test_written_after_sigint(self):
        trace, report = self.path("int.json"), self.path("int.html")
        env = dict(os.environ, MARKS=self.marks)
        p = subprocess.Popen(
            [ARGS.ratchet, "run", "-j2", "--trace", trace, "--report",
             report, "--kill-grace", "100ms", self.task, ":::", "ok-1",
             "hang", "hang", "hang"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 130, err)
        with open(trace) as f:
            slices = [e for e in json.load(f)["traceEvents"]
                      if e["ph"] == "X"]
        self.assertEqual(sorted(s["args"]["status"] for s in slices),
                         ["cancelled", "cancelled", "ok"])
        with open(report) as f:
            html = f.read()
        self.assertIn("stopped by signal 2", html)
        self.assertFalse(os.path.exists(trace + ".tmp"))

    def test_unwritable_path_is_refused_before_the_run(self):
        missing = self.path("no/such/dir/t.json")
        for flag in ("--trace", "--report"):
            r = self.run_ratchet(flag, missing, inputs=["ok-1"])
            self.assertEqual(r.returncode, 255)
            self.assertIn(flag.encode() + b": cannot write", r.stderr)
            self.assertEqual(r.stdout, b"")  # nothing ran


# ---- the report --------------------------------------------------------

class Report(Base):

    def make_report(self):
        report = self.path("run.html")
        r, tasks = self.workload("--report", report)
        with open(report, encoding="utf-8") as f:
            return report, f.read(), tasks

    def test_self_contained_and_complete(self):
        _, html, tasks = self.make_report()
        self.assertTrue(html.startswith("<!DOCTYPE html>"))
        # No network: nothing remote, no script, no external reference.
        for needle in ("http://", "https://", "src=", "<script", "@import",
                       "url(", "<iframe", "<object", "<embed"):
            self.assertNotIn(needle, html)
        for href in re.findall(r'href="([^"]*)"', html):
            self.assertTrue(href.startswith("data:") or
                            href.startswith("#"), href)
        # The timeline, the charts, the tables.
        self.assertEqual(html.count("<svg"), 3)
        self.assertEqual(html.count('class="s-ok"') >= 6, True)
        self.assertIn('class="m-retry"', html)
        self.assertIn('class="m-lost"', html)
        for title in ("Timeline", "Throughput", "Run time", "By kind",
                      "Slowest tasks", "Failures"):
            self.assertIn("<h2>%s</h2>" % title, html)
        self.assertGreaterEqual(html.count("<table>"), 3)
        # The failures, with their stderr escaped, never raw.
        self.assertIn("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; "
                      "&amp; &quot;quotes&quot; on bad", html)
        self.assertNotIn("<script>alert", html)
        self.assertIn("timed out", html)
        # The summary counts the run.
        self.assertIn("<b>10</b><span>tasks</span>", html)
        self.assertIn("<b>8</b><span>succeeded</span>", html)
        self.assertIn("<b>2</b><span>failed</span>", html)

    def test_opens_in_headless_chromium_without_console_errors(self):
        browser = chromium()
        self.assertIsNotNone(browser, "chromium is not installed "
                             "(cmake/install-deps.sh installs it)")
        report, html, _ = self.make_report()
        png = ARGS.screenshot_out or self.path("report.png")

        def render(url, shot):
            profile = tempfile.mkdtemp(prefix="chromium-", dir=self.dir)
            return subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu",
                 "--enable-logging=stderr", "--v=0",
                 "--user-data-dir=" + profile, "--no-first-run",
                 "--screenshot=" + shot, "--window-size=1280,1600", url],
                capture_output=True, timeout=120, text=True,
                errors="replace")

        def console_lines(stderr):
            return [l for l in stderr.splitlines()
                    if ":CONSOLE" in l or "Uncaught" in l]

        # The harness notices a page that does log to the console.
        bad = self.path("bad.html")
        with open(bad, "w") as f:
            f.write("<!DOCTYPE html><title>x</title><script>"
                    "console.error('deliberate'); notAFunction();"
                    "</script>")
        r = render("file://" + bad, self.path("bad.png"))
        self.assertTrue(console_lines(r.stderr), r.stderr)

        r = render("file://" + report, png)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(console_lines(r.stderr), [])
        with open(png, "rb") as f:
            data = f.read()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        width, height = struct.unpack(">II", data[16:24])
        self.assertEqual((width, height), (1280, 1600))
        # A blank page compresses to a few kilobytes; charts and tables
        # do not.
        self.assertGreater(len(data), 30000)


# ---- the logs ----------------------------------------------------------

class Logs(Base):

    def json_lines(self, stderr):
        """The JSON log lines, and the others (the tasks' own stderr)."""
        logs, other = [], []
        for line in stderr.decode().splitlines():
            if line.startswith("{"):
                logs.append(json.loads(line))
            else:
                other.append(line)
        return logs, other

    def test_json_lines_carry_task_and_worker(self):
        r, tasks = self.workload("--log-format", "json", "--log-level",
                                 "info", as_json=False)
        logs, other = self.json_lines(r.stderr)
        # Lines that are not JSON are the tasks' own stderr, whole.
        for line in other:
            self.assertTrue(line.startswith("not yet flaky-") or
                            "on bad" in line, line)
        self.assertTrue(logs)
        for o in logs:
            self.assertRegex(o["time"],
                             r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(o["level"], ("info", "warn", "error"))
            self.assertIsInstance(o["msg"], str)
        retries = [o for o in logs if o.get("event") == "retry"]
        self.assertEqual(len(retries), 3 + 2 + 2)
        for o in retries:
            self.assertEqual(o["level"], "info")
            self.assertEqual(o["kind"], "exec")
            self.assertIn(o["worker"], (0, 1))
            self.assertIn(o["task"], [t["seq"] for t in tasks.values()])
        seq_bad = tasks["bad"]["seq"]
        self.assertEqual(len([o for o in retries if o["task"] == seq_bad]), 2)
        failed = {o["task"]: o for o in logs
                  if o.get("event") == "task_failed"}
        self.assertEqual(set(failed), {seq_bad, tasks["hang"]["seq"]})
        # The timeout has no stderr of its own to explain it: warn.
        self.assertEqual(failed[tasks["hang"]["seq"]]["level"], "warn")
        lost = [o for o in logs if o.get("event") == "lost"]
        self.assertEqual(len(lost), 1)
        self.assertEqual(lost[0]["task"], tasks["crash"]["seq"])
        exited = [o for o in logs if o.get("event") == "worker_exited"]
        self.assertTrue(any(o["level"] == "warn" and "signal 9" in o["msg"]
                            for o in exited), exited)

    def test_levels_filter(self):
        counts = {}
        for level in ("debug", "info", "warn", "error"):
            r, _ = self.workload("--log-format", "json", "--log-level",
                                 level, as_json=False)
            shutil.rmtree(self.marks)
            os.mkdir(self.marks)
            logs, _ = self.json_lines(r.stderr)
            order = ["debug", "info", "warn", "error"]
            for o in logs:
                self.assertGreaterEqual(order.index(o["level"]),
                                        order.index(level), o)
            counts[level] = logs
        events = lambda lv: {o.get("event") for o in counts[lv]}
        self.assertIn("dispatched", events("debug"))
        self.assertIn("succeeded", events("debug"))
        self.assertIn("worker_ready", events("debug"))
        self.assertNotIn("dispatched", events("info"))
        self.assertIn("retry", events("info"))
        self.assertNotIn("retry", events("warn"))
        self.assertIn("task_failed", events("warn"))
        self.assertEqual(counts["error"], [])
        self.assertGreater(len(counts["debug"]), len(counts["info"]))
        self.assertGreater(len(counts["info"]), len(counts["warn"]))

    def test_text_format_and_quiet(self):
        r, _ = self.workload(as_json=False)
        err = r.stderr.decode()
        self.assertIn("ratchet run: warning: task ", err)
        self.assertIn(": timeout: ", err)
        self.assertNotIn("\x1b[", err)  # colours only on a terminal
        self.assertNotIn("ratchet run: info:", err)
        shutil.rmtree(self.marks)
        os.mkdir(self.marks)
        r, _ = self.workload("--quiet", as_json=False)
        self.assertNotIn("ratchet run:", r.stderr.decode())
        shutil.rmtree(self.marks)
        os.mkdir(self.marks)
        r, _ = self.workload("--quiet", "--log-level", "info", as_json=False)
        self.assertIn("ratchet run: info:", r.stderr.decode())

    def test_a_log_line_never_starts_mid_line(self):
        r = self.run_ratchet("-j1", "--log-level", "info",
                             inputs=["partial", "partial", "ok-1"])
        self.assertEqual(r.returncode, 2)
        lines = r.stderr.decode().split("\n")
        for line in lines:
            if not line.startswith("ratchet run: "):
                self.assertIn(line, ("no newline at the end", ""), lines)
        self.assertEqual(lines.count("no newline at the end"), 2, lines)

    def test_worker_stderr_is_tagged(self):
        r = subprocess.run(
            [ARGS.ratchet, "run", "--log-format", "json", "--plugin",
             "/lib/x86_64-linux-gnu/libm.so.6", "--kind", "x", ":::", "a"],
            capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 255)
        logs = [json.loads(l) for l in r.stderr.decode().splitlines()]
        tagged = [o for o in logs if o.get("event") == "worker_stderr"]
        self.assertTrue(tagged, logs)
        self.assertIn(tagged[0]["worker"], (0, 1, 2, 3))
        self.assertEqual(tagged[0]["level"], "warn")
        self.assertIn("is not a ratchet plugin", tagged[0]["msg"])
        self.assertEqual(logs[-1]["event"], "pool_failed")
        self.assertEqual(logs[-1]["level"], "error")

    def test_bad_values(self):
        for args, needle in ((["--log-level", "loud"], b"--log-level"),
                             (["--log-format", "xml"], b"--log-format"),
                             (["--trace", ""], b"--trace")):
            r = self.run_ratchet(*args, inputs=["ok-1"])
            self.assertEqual(r.returncode, 255, args)
            self.assertIn(needle, r.stderr)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--ratchet", required=True)
    p.add_argument("--screenshot-out", default=None,
                   help="keep the report's screenshot here (docs/images)")
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
