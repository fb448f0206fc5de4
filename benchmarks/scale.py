"""Scale: many connections in one scheduler, and a million messages flat.

    python3 benchmarks/scale.py                  # quick: 500 connections,
                                                 # 20,000 messages per path
    python3 benchmarks/scale.py --connections 10000 --messages 1000000

The second line is the full size of issue 5, item 3; results are kept in
benchmarks/SCALE.md.  Needs `make` (build/c/scale-hold and the driver),
Postfix's smtp-sink and, for the asyncio path, the installed package.

Connections.  The benchmark raises its own descriptor limit (the library
never does), then starts `smtp-sink -v -m N+100`, which inherits it, and
`scale-hold`, which opens N connections in one scheduler and parks each in
a state after session-ready, so each has had the server's 250 to EHLO.
While all are parked it reads the server's side: smtp-sink's -v log counts
the sessions it accepted and closed and the EHLO commands it received, and
/proc/net/tcp the established sockets on the sink's port.  N sessions open,
none closed and N EHLO commands (the engine sends one per session) mean
every open session is past EHLO as the server saw it.  Memory per
connection is the growth of scale-hold's VmRSS (read from /proc) from
before the first connection to all N parked, divided by N; the bound is
16 KiB.  Then the connections go on, deliver one message each, and the
sink's own count must say N.

Messages.  The C driver (`--count`, messages built as submitted and freed
at their outcome) and `deliver_async` over a lazy generator
(benchmarks/scale_async.py) each send M small messages to a fresh sink,
printing elapsed time, CPU time and VmRSS every 1%.  The first 10% is
warm-up; the next 10% is compared with the last 10%: time per message and
the highest RSS must each be within 10%.  The verdict uses CPU time: the
machine is shared, so wall time, printed beside it, also measures the
neighbours.  Delivered counts and the sink's count must both say M.

Exit status: 0 every check passed; 1 a run failed or a count is wrong;
2 the counts are right but a bound (16 KiB, 10%) was missed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import re
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("SMTPSTATE_C_BUILD", ROOT / "build" / "c"))
SINK = "/usr/sbin/smtp-sink"
ASYNC_CHILD = ROOT / "benchmarks" / "scale_async.py"
SENDER, RECIPIENT = "a@example.com", "b@example.com"
CONN_BOUND = 16 * 1024  # bytes per connection
FLAT_BOUND = 0.10  # last 10% within 10% of the first 10% after warm-up


def log(text: str = "") -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raise_nofile(need: int) -> tuple[int, int]:
    """Raises this process's descriptor limit (children inherit it);
    returns the soft limit before and after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    new_soft = soft if soft == infinite or soft >= need else need
    new_hard = hard if hard == infinite or hard >= new_soft else new_soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
    except (ValueError, OSError) as exc:
        sys.exit(
            f"scale: cannot raise the descriptor limit to {need} (hard {hard}): "
            f"{exc}; run as root or raise the hard limit"
        )
    return soft, new_soft


def port_range() -> tuple[int, int]:
    text = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    low, high = (int(x) for x in text.split())
    return low, high


def established(port: int) -> int:
    """Established TCP sockets whose local port is `port` (the server's
    side of each connection), from /proc/net/tcp.  Counted by peer: the
    table is read in chunks while other sockets come and go, so a line
    may be listed twice."""
    peers = set()
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].split(":")[1], 16) == port:
                peers.add(fields[2])
    return len(peers)


class Sink:
    """smtp-sink on a loopback port.  Its -c counter (stdout) gives the
    messages received; with `verbose`, its -v log (stderr) gives the
    sessions accepted and closed and the EHLO commands received."""

    def __init__(
        self, workdir: pathlib.Path, max_sessions: int, verbose: bool, timeout: int
    ):
        self.port = free_port()
        self.out = workdir / f"sink-{self.port}.out"
        self.err = workdir / f"sink-{self.port}.err"
        args = [SINK, "-c"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        if verbose:
            args.append("-v")
        args += ["-t", str(timeout), "-m", str(max_sessions)]
        args += [f"127.0.0.1:{self.port}", "4096"]
        self.args = args
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        # The probe is a session too: wait until the log has closed it,
        # so that sessions() can leave it out.
        while verbose and self._raw_sessions()[1] < 1:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"smtp-sink did not start: {self.err.read_text()}")

    def messages(self) -> int:
        text = self.out.read_bytes().decode("ascii", "replace")
        counts = re.findall(r"mesg=(\d+)", text)
        return int(counts[-1]) if counts else 0

    def wait_messages(self, expected: int, seconds: float = 15) -> int:
        """The sink's count, once it reaches `expected` or time runs out
        (the counter is written as sessions end)."""
        deadline = time.monotonic() + seconds
        while self.messages() < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.messages()

    def _raw_sessions(self) -> tuple[int, int, int]:
        text = self.err.read_bytes().decode("ascii", "replace")
        accepted = len(re.findall(r": connect \(", text))
        closed = len(re.findall(r": disconnect$", text, re.M))
        ehlo = len(re.findall(r": EHLO ", text))
        return accepted, closed, ehlo

    def sessions(self) -> tuple[int, int, int]:
        """(accepted, closed, EHLO received) from the -v log, without the
        readiness probe (one session, closed, no EHLO)."""
        accepted, closed, ehlo = self._raw_sessions()
        return accepted - 1, closed - 1, ehlo

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Lines:
    """Reads a child's output line by line with a deadline, from the raw
    descriptor (a buffered reader could hold a line select cannot see)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def read(self, prefix: str, deadline: float) -> dict[str, str]:
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode("ascii", "replace")
                if text.startswith(prefix + " "):
                    return dict(re.findall(r"(\w+)=(\S+)", text))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no '{prefix}' line in time")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise EOFError(f"the program ended before its '{prefix}' line")
                self.buf += chunk


# ---- connections -------------------------------------------------------------


@dataclass
class HoldResult:
    wanted: int
    parked: int = 0
    client_open: int = 0
    rss0_kib: int = 0
    rss1_kib: int = 0
    sink_open: int = 0
    sink_closed: int = 0
    sink_ehlo: int = 0
    established: int = 0
    delivered: int = 0
    sink_messages: int = 0
    error: str = ""

    @property
    def per_conn(self) -> float:
        return (self.rss1_kib - self.rss0_kib) * 1024 / max(self.wanted, 1)

    @property
    def counts_ok(self) -> bool:
        n = self.wanted
        return not self.error and (
            self.parked == n
            and self.client_open == n
            and self.sink_open == n
            and self.sink_ehlo == n
            and self.established == n
            and self.delivered == n
            and self.sink_messages == n
        )


def server_view(sink: Sink, n: int, seconds: float) -> tuple[int, int, int, int]:
    """Waits (bounded) until the sink's log shows n sessions open, each
    with its EHLO; returns (open, closed, ehlo, established)."""
    deadline = time.monotonic() + seconds
    while True:
        accepted, closed, ehlo = sink.sessions()
        opened = accepted - closed
        if (opened == n and ehlo == n) or time.monotonic() > deadline:
            return opened, closed, ehlo, established(sink.port)
        time.sleep(0.2)


def hold_connections(
    n: int, ramp: int, workdir: pathlib.Path, wait_s: float
) -> HoldResult:
    res = HoldResult(wanted=n)
    # Parked sessions are silent for as long as the others take to open
    # (smtp-sink slows as its sessions grow): its command timeout must
    # outlast the whole hold, not only its default 100 s.
    sink = Sink(workdir, n + 100, verbose=True, timeout=int(wait_s) * 3 + 100)
    errors = workdir / "scale-hold.err"
    cmd = [
        str(BUILD / "scale-hold"), "--port", str(sink.port),
        "--connections", str(n), "--wait-ms", str(int(wait_s * 1000)),
        "--ramp", str(ramp),
    ]  # fmt: skip
    log(f"  sink: {' '.join(sink.args)}")
    try:
        with open(errors, "wb") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        assert proc.stdin is not None and proc.stdout is not None
        lines = Lines(proc.stdout.fileno())
        try:
            ready = lines.read("ready", time.monotonic() + 30)
            res.rss0_kib = int(ready["rss_kib"])
            held = lines.read("held", time.monotonic() + wait_s + 30)
            res.parked, res.client_open = int(held["parked"]), int(held["open"])
            res.rss1_kib = int(held["rss_kib"])
            view = server_view(sink, n, 30)
            res.sink_open, res.sink_closed, res.sink_ehlo, res.established = view
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            summary = lines.read("summary", time.monotonic() + 120 + n / 100)
            res.delivered = int(summary["delivered"])
            proc.wait(30)
        except (TimeoutError, EOFError, subprocess.TimeoutExpired) as exc:
            res.error = f"{exc}; stderr: {errors.read_text()[-500:]}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        res.sink_messages = sink.wait_messages(n)
    finally:
        sink.stop()
    return res


def report_hold(res: HoldResult) -> int:
    n = res.wanted
    log(f"  client: parked after EHLO {res.parked} of {n}, open {res.client_open}")
    log(
        f"  server: sessions open {res.sink_open}, closed {res.sink_closed}, "
        f"EHLO received {res.sink_ehlo}, established sockets {res.established}"
    )
    log(f"  VmRSS: {res.rss0_kib} KiB at 0 connections, {res.rss1_kib} KiB at {n}")
    verdict = "PASS" if res.per_conn <= CONN_BOUND else "FAIL"
    log(
        f"  memory per connection: {res.per_conn:.0f} bytes "
        f"(bound {CONN_BOUND}): {verdict}"
    )
    log(f"  after release: delivered {res.delivered}, sink counted {res.sink_messages}")
    if res.error:
        log(f"  error: {res.error}")
    log(f"  every connection past EHLO, counts match: {res.counts_ok}")
    if not res.counts_ok:
        return 1
    return 0 if verdict == "PASS" else 2


# ---- messages ------------------------------------------------------------------


@dataclass
class Sample:
    outcomes: int
    elapsed_us: int
    cpu_us: int
    rss_kib: int


@dataclass
class StreamResult:
    name: str
    wanted: int
    samples: list[Sample] = field(default_factory=list)
    delivered: int = 0
    sink_messages: int = 0
    error: str = ""

    @property
    def counts_ok(self) -> bool:
        n = self.wanted
        return not self.error and self.delivered == n and self.sink_messages == n


def stream(name: str, cmd: list[str], n: int, sink: Sink) -> StreamResult:
    """Runs a sender to completion (bounded in time) and reads its
    progress and summary lines."""
    res = StreamResult(name=name, wanted=n)
    limit = 120 + n / 1000
    try:
        out = subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=limit
        )
    except subprocess.TimeoutExpired:
        res.error = f"did not finish within {limit:.0f} s"
        return res
    text = out.stderr.decode("ascii", "replace")
    for line in text.splitlines():
        pairs = dict(re.findall(r"(\w+)=(\S+)", line))
        if line.startswith("progress "):
            res.samples.append(
                Sample(
                    int(pairs["outcomes"]),
                    int(pairs["elapsed_us"]),
                    int(pairs["cpu_us"]),
                    int(pairs["rss_kib"]),
                )
            )
        elif line.startswith("summary "):
            res.delivered = int(pairs["delivered"])
    if out.returncode != 0:
        res.error = f"exit status {out.returncode}: {text[-500:]}"
    res.sink_messages = sink.wait_messages(n)
    return res


@dataclass
class Window:
    first: Sample
    last: Sample
    rss_max: int

    @property
    def messages(self) -> int:
        return self.last.outcomes - self.first.outcomes

    @property
    def wall_us(self) -> float:
        return (self.last.elapsed_us - self.first.elapsed_us) / max(self.messages, 1)

    @property
    def cpu_us(self) -> float:
        return (self.last.cpu_us - self.first.cpu_us) / max(self.messages, 1)


def window(samples: list[Sample], n: int, lo: float, hi: float) -> Window:
    """The samples from the first at or past lo*n to the first at or past
    hi*n (or the last one)."""
    start = next(s for s in samples if s.outcomes >= lo * n)
    end = next((s for s in samples if s.outcomes >= hi * n), samples[-1])
    inside = [
        s.rss_kib for s in samples if start.outcomes <= s.outcomes <= end.outcomes
    ]
    return Window(start, end, max(inside))


def ratio_verdict(value: float) -> str:
    return "PASS" if abs(value - 1) <= FLAT_BOUND else "FAIL"


def report_stream(res: StreamResult) -> int:
    n = res.wanted
    log(f"  delivered {res.delivered} of {n}, sink counted {res.sink_messages}")
    if res.error:
        log(f"  error: {res.error}")
    if len(res.samples) < 21:
        log("  too few progress samples to compare windows")
        return 1
    early = window(res.samples, n, 0.10, 0.20)
    late = window(res.samples, n, 0.90, 1.00)
    log(
        f"  {'window':<16} {'messages':>9} {'wall µs/msg':>12} "
        f"{'cpu µs/msg':>11} {'max VmRSS KiB':>14}"
    )
    for label, w in (("10-20% (first)", early), ("90-100% (last)", late)):
        log(
            f"  {label:<16} {w.messages:9d} {w.wall_us:12.2f} {w.cpu_us:11.2f} "
            f"{w.rss_max:14d}"
        )
    wall = late.wall_us / early.wall_us if early.wall_us else float("inf")
    cpu = late.cpu_us / early.cpu_us if early.cpu_us else float("inf")
    rss = late.rss_max / early.rss_max
    log(
        f"  last/first: cpu time {cpu:.3f} {ratio_verdict(cpu)}, "
        f"VmRSS {rss:.3f} {ratio_verdict(rss)}, "
        f"wall time {wall:.3f} (shown, not gated)"
    )
    total = res.samples[-1]
    log(
        f"  whole run: {total.outcomes / (total.elapsed_us / 1e6):.0f} msg/s, "
        f"{total.cpu_us / max(total.outcomes, 1):.2f} cpu µs/msg"
    )
    log(f"  counts match: {res.counts_ok}")
    if not res.counts_ok:
        return 1
    flat = ratio_verdict(cpu) == "PASS" and ratio_verdict(rss) == "PASS"
    return 0 if flat else 2


def run_messages(
    path: str, n: int, size: int, conc: int, workdir: pathlib.Path
) -> StreamResult:
    sink = Sink(workdir, conc + 100, verbose=False, timeout=100)
    every = str(max(n // 100, 1))
    if path == "driver":
        cmd = [
            str(BUILD / "smtpstate-send"), "--port", str(sink.port),
            "--from", SENDER, "--to", RECIPIENT, "--count", str(n),
            "--size", str(size), "--concurrency", str(conc), "--quiet",
            "--progress", every,
        ]  # fmt: skip
    else:
        cmd = [
            sys.executable, str(ASYNC_CHILD), "--port", str(sink.port),
            "--messages", str(n), "--size", str(size),
            "--concurrency", str(conc), "--progress", every,
        ]  # fmt: skip
    try:
        return stream(path, cmd, n, sink)
    finally:
        sink.stop()


# ---- main ------------------------------------------------------------------------


def worse(a: int, b: int) -> int:
    """Of two exit statuses, the worse: a wrong count (1) over a bound (2)."""
    return 1 if 1 in (a, b) else max(a, b)


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def main() -> int:
    global BUILD
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--size", type=int, default=300, help="bytes per message")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--wait", type=float, default=300, help="seconds to park")
    parser.add_argument("--ramp", type=int, default=1000, help="connections a wave")
    parser.add_argument(
        "--only", choices=("connections", "driver", "async"), action="append"
    )
    parser.add_argument("--build", type=pathlib.Path, default=BUILD)
    args = parser.parse_args()
    BUILD = args.build
    parts = args.only or ["connections", "driver", "async"]
    for tool in (SINK, BUILD / "scale-hold", BUILD / "smtpstate-send"):
        if not pathlib.Path(tool).exists():
            sys.exit(f"scale: missing {tool}: run make (and install postfix)")

    before, after = raise_nofile(args.connections + 256)
    low, high = port_range()
    log(f"scale.py  commit {commit()}  {datetime.datetime.now():%Y-%m-%d %H:%M}")
    log(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, Linux "
        f"{platform.release()}, {platform.python_implementation()} "
        f"{platform.python_version()}"
    )
    log(
        f"descriptor limit: soft {before} -> {after}; "
        f"ephemeral ports {low}-{high} ({high - low + 1})"
    )
    if "connections" in parts and high - low + 1 < args.connections + 1000:
        sys.exit("scale: the ephemeral port range is too small for that many")

    status = 0
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        workdir = pathlib.Path(tmp)
        if "connections" in parts:
            log()
            log(
                f"{args.connections} connections in one scheduler, held past EHLO "
                f"(opened {args.ramp} at a time)"
            )
            res = hold_connections(args.connections, args.ramp, workdir, args.wait)
            status = worse(status, report_hold(res))
        for path in ("driver", "async"):
            if path not in parts:
                continue
            log()
            what = "the C driver" if path == "driver" else "deliver_async"
            log(
                f"{args.messages} messages of {args.size} bytes through {what}, "
                f"concurrency {args.concurrency}"
            )
            res2 = run_messages(
                path, args.messages, args.size, args.concurrency, workdir
            )
            status = worse(status, report_stream(res2))
    log()
    log({0: "ALL PASS", 1: "FAILED: a count or a run", 2: "FAILED: a bound"}[status])
    return status


if __name__ == "__main__":
    raise SystemExit(main())
