"""Throughput and cost of smtpstate's senders beside Postfix's smtp-source
and two Python SMTP clients, all sending to smtp-sink on loopback in one run.

    python3 benchmarks/run.py            # the full matrix (under 15 min)
    python3 benchmarks/run.py --quick    # a reduced matrix (under 1 min)

Senders: smtp-source (the anchor), the C driver (build/c/smtpstate-send),
the Python API (smtpstate.deliver_iter), the Python API with a pass-through
Python state after TRANSACTION, aiosmtplib and smtplib.  Workloads: 1 KiB
and 100 KiB messages; 1, 10 and 100 connections at once; connections reused
or one per message; the sink offering PIPELINING or not (``smtp-sink -p``;
only smtpstate's senders pipeline, so aiosmtplib and smtplib run with it
offered only).  The 1 KiB rows are the median of three interleaved
repetitions.  Each client runs under build/c/rusage-run, so its CPU (user +
system of its whole process tree, start-up included) and peak RSS are
measured the same way for all.

Writes the runs to a TSV (benchmarks/results/) and, on a full run,
benchmarks/RESULTS.md from it (benchmarks/report.py), and prints the table,
the comparisons and the issue's targets with PASS or FAIL.  Exits 1, loudly,
when any sink count differs from the count sent.

Needs /usr/sbin/smtp-sink and smtp-source, `make`, the package installed in
this Python and aiosmtplib: bash scripts/install-test-deps.sh, or
pip install -r benchmarks/requirements.txt.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import pathlib
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import report
from report import (
    AIO,
    ANCHOR,
    C_DRIVER,
    COLUMNS,
    PY_API,
    PY_STATE,
    SMTPLIB,
    Run,
    Workload,
)

BENCH = pathlib.Path(__file__).resolve().parent
ROOT = BENCH.parent
# The same build directory the tests use (make BUILD=...).
BUILD = ROOT / os.environ.get("SMTPSTATE_C_BUILD", "build/c")
DRIVER = BUILD / "smtpstate-send"
RUSAGE_RUN = BUILD / "rusage-run"
SENDERS = BENCH / "senders"
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
TICKS = os.sysconf("SC_CLK_TCK")
FROM, TO = "a@example.com", "b@example.com"
INSTALL_HINT = (
    "install with: pip install -r benchmarks/requirements.txt "
    "(or bash scripts/install-test-deps.sh)"
)
# A client that takes longer than this is stuck: its process group is killed.
RUN_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """smtp-sink on loopback; its own counter (-c) gives the messages it got."""

    def __init__(self, pipelining: bool) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="bench-sink-", suffix=".log")
        args = [SINK, "-c", "-m", "2000"]
        if os.geteuid() == 0:
            args[1:1] = ["-u", "nobody"]
        if not pipelining:
            args.append("-p")
        args += [f"127.0.0.1:{self.port}", "2000"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("smtp-sink did not start")

    def messages(self) -> int:
        """The sink's running count of messages received.  Each update ends
        in a CR, so a count cut short by a write in progress is not read."""
        with open(self.log.name, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 256))
            counts = re.findall(rb"mesg=(\d+)\r", f.read())
        return int(counts[-1]) if counts else 0

    def wait_for(self, count: int, seconds: float = 5.0) -> int:
        """The count, once it reaches ``count`` or ``seconds`` have passed:
        the counter is written as sessions end, after the client exits."""
        deadline = time.monotonic() + seconds
        while (got := self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return got

    def cpu_seconds(self) -> float:
        fields = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text().split()
        return (int(fields[13]) + int(fields[14])) / TICKS

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass(frozen=True)
class Sender:
    name: str
    # The Python clients are slower per message: they get fewer messages.
    slow: bool
    # Whether it sends MAIL, RCPT and DATA in one write when offered.
    pipelines: bool


SENDER_LIST = [
    Sender(ANCHOR, False, False),
    Sender(C_DRIVER, False, True),
    Sender(PY_API, False, True),
    Sender(PY_STATE, False, True),
    Sender(AIO, True, False),
    Sender(SMTPLIB, True, False),
]


def command(sender: str, port: int, count: int, w: Workload) -> list[str]:
    # Reused as smtp-source -d reuses them: each connection slot keeps one
    # connection for the whole run.
    per_conn = str(count) if w.reuse else "1"
    if sender == ANCHOR:
        # -l is the payload after smtp-source's own few header lines; the
        # other senders' --size is the whole message.
        args = [SOURCE, "-s", str(w.concurrency), "-m", str(count)]
        args += ["-l", str(w.size), *(["-d"] if w.reuse else [])]
        return [*args, "-f", FROM, "-t", TO, f"127.0.0.1:{port}"]
    common = [
        "--port", str(port), "--count", str(count), "--size", str(w.size),
        "--concurrency", str(w.concurrency), "--per-connection", per_conn,
    ]  # fmt: skip
    if sender == C_DRIVER:
        return [str(DRIVER), "--from", FROM, "--to", TO, "--quiet", *common]
    script = {
        PY_API: "send_smtpstate.py",
        PY_STATE: "send_smtpstate.py",
        AIO: "send_aiosmtplib.py",
        SMTPLIB: "send_smtplib.py",
    }[sender]
    extra = ["--state"] if sender == PY_STATE else []
    return [sys.executable, str(SENDERS / script), *common, *extra]


# Messages per run, chosen so a run of the C driver takes about 1 to 2 s
# on a 2-core machine (smtp-source, four round trips a message, takes
# ~10 s at concurrency 1; smtp-sink takes ~40,000-60,000 reused 1 KiB
# messages a second on one core, the more the fewer round trips a message
# costs it): (size, reuse, c1) -> (fast senders, slow senders).  CPU is per
# message, so the Python clients sending fewer only spreads their start-up
# (~70 ms of CPU, as for the Python API) over fewer messages.  The 1 KiB
# reused rows at c10 and c100 send 180,000: the C driver pipelines some
# 110,000 a second there, and 60,000 took it half a second, which spread
# the Python API's start-up (~45 ms of CPU) as 0.75 us over each message.
COUNTS = {
    (1024, True, True): (36000, 3000),
    (1024, True, False): (180000, 4000),
    (1024, False, True): (3000, 800),
    (1024, False, False): (5000, 1500),
    (102400, True, True): (3000, 1000),
    (102400, True, False): (3000, 1000),
    (102400, False, True): (2000, 600),
    (102400, False, False): (2000, 600),
}


def count_for(sender: Sender, w: Workload, scale: float) -> int:
    fast, slow = COUNTS[(w.size, w.reuse, w.concurrency == 1)]
    return max(w.concurrency, round((slow if sender.slow else fast) * scale))


def matrix(quick: bool, reps: int) -> list[tuple[Workload, int]]:
    """Every workload with its number of repetitions."""
    out = []
    sizes = (1024,) if quick else (1024, 102400)
    for size in sizes:
        for pipe in (True, False):
            for reuse in (True, False):
                for c in (1, 10, 100):
                    w = Workload(size, c, reuse, pipe)
                    if quick and not pipe and not (reuse and c > 1):
                        continue
                    n = 1 if quick or size != 1024 else reps
                    out.append((w, n))
    return out


def plan(quick: bool, reps: int) -> list[tuple[int, Workload, Sender]]:
    """The runs in order: repetition 1 of every sender in every workload,
    then repetition 2, and so on, so that a slow spell of the machine falls
    on all senders alike rather than on one."""
    work = matrix(quick, reps)
    out = []
    for rep in range(1, max(n for _, n in work) + 1):
        for w, n in work:
            if rep > n:
                continue
            for s in SENDER_LIST:
                if w.pipelining or s.pipelines or s.name == ANCHOR:
                    out.append((rep, w, s))
    return out


def run_client(args: list[str]) -> tuple[float, dict[str, str]]:
    """Runs ``args`` under rusage-run; its wall time and every key=value
    of its stderr (rusage-run's line last, so its figures win)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(RUSAGE_RUN), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err_bytes = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"{args[0]} ran over {RUN_TIMEOUT:.0f} s") from None
    seconds = time.monotonic() - start
    err = err_bytes.decode(errors="replace")
    if proc.returncode != 0 or "rusage " not in err:
        raise RuntimeError(
            f"{' '.join(args)}\nfailed with status {proc.returncode}:\n{err}"
        )
    return seconds, dict(re.findall(r"(\w+)=([\d.]+)", err))


def measure(rep: int, w: Workload, s: Sender, sink: Sink, scale: float) -> Run:
    count = count_for(s, w, scale)
    before_count, before_cpu = sink.messages(), sink.cpu_seconds()
    seconds, usage = run_client(command(s.name, sink.port, count, w))
    received = sink.wait_for(before_count + count) - before_count
    return Run(
        rep=rep,
        workload=w,
        sender=s.name,
        sent=count,
        received=received,
        seconds=seconds,
        cpu_s=float(usage["utime"]) + float(usage["stime"]),
        rss_kib=int(usage["maxrss_kib"]),
        sink_cpu_s=sink.cpu_seconds() - before_cpu,
        state_calls=int(usage.get("state_calls", 0)),
    )


def _output(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def machine_facts(note: str) -> dict[str, str]:
    cpu = "unknown"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    git = ["git", "-C", str(ROOT)]
    commit = _output([*git, "rev-parse", "--short", "HEAD"])
    changed = _output([*git, "status", "--porcelain", "--untracked-files=no"])
    facts = {
        "commit": commit
        + ("" if changed == "unknown" else " (with uncommitted changes)"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "gcc": _output(["cc", "--version"]),
        "Postfix (smtp-sink, smtp-source)": _output(
            ["/usr/sbin/postconf", "-d", "-h", "mail_version"]
        ),
        "aiosmtplib": _version("aiosmtplib"),
        "load average at start": " ".join(_loadavg()),
    }
    if note:
        facts["note"] = note
    return facts


def _loadavg() -> list[str]:
    return pathlib.Path("/proc/loadavg").read_text().split()[:3]


def preflight() -> None:
    """Exits with what to do when a tool or module is missing or stale."""
    for tool in (SINK, SOURCE):
        if not pathlib.Path(tool).exists():
            sys.exit(f"missing {tool}: run bash scripts/install-test-deps.sh")
    for tool in (DRIVER, RUSAGE_RUN):
        if not tool.exists():
            sys.exit(f"missing {tool}: run make")
    sources = [*ROOT.glob("csrc/*.[ch]"), *ROOT.glob("include/*.h")]
    sources += [ROOT / "examples" / "smtpstate-send.c"]
    newest = max(p.stat().st_mtime for p in sources)
    if DRIVER.stat().st_mtime < newest:
        sys.exit(f"{DRIVER} is older than the C sources: run make")
    for module in ("smtpstate", "aiosmtplib"):
        if importlib.util.find_spec(module) is None:
            hint = INSTALL_HINT if module == "aiosmtplib" else "pip install ."
            sys.exit(f"{module} is not importable from {sys.executable}: {hint}")
    spec = importlib.util.find_spec("smtpstate")
    where = pathlib.Path(spec.origin or "").parent
    built = [p.stat().st_mtime for p in where.glob("_smtpstate_cffi*.so")]
    if built and max(built) < newest:
        print(
            f"warning: the smtpstate in {where} is older than the C sources; "
            "pip install . to measure them",
            file=sys.stderr,
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("--quick", action="store_true", help="reduced matrix")
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="multiply every message count (default 1; 0.3 with --quick)",
    )
    parser.add_argument("--reps", type=int, default=3, help="for the 1 KiB rows")
    parser.add_argument("--tsv", type=pathlib.Path, help="where to write the runs")
    parser.add_argument(
        "--report",
        type=pathlib.Path,
        help="where to write the Markdown report "
        "(default benchmarks/RESULTS.md on a full run, none with --quick)",
    )
    parser.add_argument("--note", default="", help="a note for the report")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop with an error past this (default 25; 3 with --quick)",
    )
    args = parser.parse_args()
    scale = args.scale if args.scale is not None else (0.3 if args.quick else 1.0)
    limit = 60 * (args.max_minutes or (3 if args.quick else 25))
    if scale <= 0 or not 1 <= args.reps <= 9:
        parser.error("--scale must be above 0 and --reps from 1 to 9")
    preflight()

    facts = machine_facts(args.note)
    facts["matrix"] = (
        f"{'quick' if args.quick else 'full'}, counts x{scale:g}, "
        f"{1 if args.quick else args.reps} repetitions of the 1 KiB rows"
    )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    commit = facts["commit"].split()[0]
    tsv = args.tsv or (
        BENCH / "results" / ("quick" if args.quick else "") / f"{stamp}-{commit}.tsv"
    )
    tsv.parent.mkdir(parents=True, exist_ok=True)
    todo = plan(args.quick, args.reps)
    runs: list[Run] = []
    started = time.monotonic()
    sinks = {}
    try:
        sinks = {pipe: Sink(pipe) for pipe in (True, False)}
        with open(tsv, "w") as out:
            for key, value in facts.items():
                out.write(f"# {key}: {value}\n")
            out.write("\t".join(COLUMNS) + "\n")
            for i, (rep, w, s) in enumerate(todo, 1):
                if time.monotonic() - started > limit:
                    raise RuntimeError(f"over {limit / 60:.0f} minutes; stopped")
                run = measure(rep, w, s, sinks[w.pipelining], scale)
                runs.append(run)
                out.write("\t".join(run.fields()) + "\n")
                out.flush()
                print(
                    f"[{i}/{len(todo)}] rep {rep} {w.label:<26} {s.name:<13}"
                    f"{run.rate:8.0f} msg/s {run.cpu_us:7.1f} µs/msg "
                    f"{run.received}/{run.sent}",
                    file=sys.stderr,
                )
            out.write(f"# load average at end: {' '.join(_loadavg())}\n")
    finally:
        for sink in sinks.values():
            sink.stop()
    minutes = (time.monotonic() - started) / 60
    print(report.render_text(runs))
    print(f"\n{len(runs)} runs in {minutes:.1f} min; raw runs in {tsv}")
    bad = report.mismatches(runs)
    destination = args.report or (None if args.quick else BENCH / "RESULTS.md")
    if destination is not None:
        meta, _ = report.load(tsv)
        text = report.render_markdown(meta, runs, report.display_path(tsv))
        destination.write_text(text)
        print(f"report in {destination}")
    for line in bad:
        print(f"MISMATCH: {line}", file=sys.stderr)
    if bad:
        print(
            f"FAILED: {len(bad)} runs where the sink's count is not the count "
            "sent (or the Python state did not run once per message)",
            file=sys.stderr,
        )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
