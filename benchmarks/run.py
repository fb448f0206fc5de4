"""Side-by-side throughput and cost: smtpstate's C driver beside Postfix's
smtp-source, both sending to one smtp-sink on loopback in the same run.

    python3 benchmarks/run.py            # 20,000 messages per row
    python3 benchmarks/run.py --quick    # 3,000 messages per row

Each row prints messages per second, client CPU (user + system of the
client process) per message, the client's peak RSS, the sink's CPU and the
count the sink received (checked against the count sent), then each
figure as a ratio to smtp-source's in the same workload.  Needs
/usr/sbin/smtp-sink and smtp-source (scripts/install-test-deps.sh) and
the C driver (`make`).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
DRIVER = ROOT / "build" / "c" / "smtpstate-send"
RUSAGE_RUN = ROOT / "build" / "c" / "rusage-run"
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """smtp-sink on loopback; its own counter (-c) gives the messages it got."""

    def __init__(self, pipelining: bool = True) -> None:
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="sink-", suffix=".log")
        args = [SINK, "-u", "nobody", "-c", "-m", "2000"]
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
        raise RuntimeError("smtp-sink did not start")

    def messages(self) -> int:
        """The sink's own running count of messages received."""
        text = pathlib.Path(self.log.name).read_bytes().decode("ascii", "replace")
        counts = re.findall(r"mesg=(\d+)", text)
        return int(counts[-1]) if counts else 0

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


@dataclass
class Row:
    sender: str
    workload: str
    sent: int
    received: int
    seconds: float
    cpu: float
    rss_kib: int
    sink_cpu: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.sent * 1e6


def run_client(args: list[str], sink: Sink, sent: int, name: str, wl: str) -> Row:
    before_count, before_cpu = sink.messages(), sink.cpu_seconds()
    start = time.monotonic()
    proc = subprocess.run(
        [str(RUSAGE_RUN), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seconds = time.monotonic() - start
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {err}")
    usage = dict(re.findall(r"(\w+)=([\d.]+)", err.splitlines()[-1]))
    time.sleep(0.3)  # the sink's counter is written as sessions end
    return Row(
        sender=name,
        workload=wl,
        sent=sent,
        received=sink.messages() - before_count,
        seconds=seconds,
        cpu=float(usage["utime"]) + float(usage["stime"]),
        rss_kib=int(usage["maxrss_kib"]),
        sink_cpu=sink.cpu_seconds() - before_cpu,
    )


def senders(port: int, count: int, conc: int, reuse: bool) -> dict[str, list[str]]:
    per_conn = "100" if reuse else "1"
    source = [SOURCE, "-s", str(conc), "-m", str(count), "-l", "1024"]
    if reuse:
        source.append("-d")
    source += ["-f", "a@example.com", "-t", "b@example.com", f"127.0.0.1:{port}"]
    driver = [
        str(DRIVER), "--port", str(port), "--from", "a@example.com",
        "--to", "b@example.com", "--count", str(count), "--size", "1024",
        "--concurrency", str(conc), "--per-connection", per_conn, "--quiet",
    ]  # fmt: skip
    return {"smtp-source": source, "smtpstate C": driver}


def fmt_ratio(value: float, anchor: float) -> str:
    return f"{value / anchor:5.2f}x" if anchor else "   - "


def print_rows(rows: list[Row]) -> None:
    head = (
        f"{'workload':<18} {'sender':<12} {'msg/s':>8} {'cpu µs/msg':>10} "
        f"{'rss KiB':>8} {'sink cpu':>8} {'recv/sent':>11} "
        f"{'msg/s':>6} {'cpu':>6} {'rss':>6}"
    )
    print(head)
    print("-" * len(head))
    anchors = {r.workload: r for r in rows if r.sender == "smtp-source"}
    for r in rows:
        a = anchors[r.workload]
        print(
            f"{r.workload:<18} {r.sender:<12} {r.rate:8.0f} {r.cpu_us:10.1f} "
            f"{r.rss_kib:8d} {r.sink_cpu:8.2f} {r.received:5d}/{r.sent:<5d} "
            f"{fmt_ratio(r.rate, a.rate)} {fmt_ratio(r.cpu_us, a.cpu_us)} "
            f"{fmt_ratio(r.rss_kib, a.rss_kib)}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 per row")
    parser.add_argument("--count", type=int, default=None)
    args = parser.parse_args()
    count = args.count or (3000 if args.quick else 20000)
    for tool in (SINK, SOURCE, DRIVER, RUSAGE_RUN):
        if not pathlib.Path(tool).exists():
            sys.exit(f"missing {tool}: run scripts/install-test-deps.sh and make")

    rows: list[Row] = []
    sink = Sink()
    try:
        for reuse in (True, False):
            for conc in (1, 10, 100):
                n = count if reuse else max(count // 4, conc)
                wl = f"1KiB c{conc} {'reuse' if reuse else 'conn/msg'}"
                for name, cmd in senders(sink.port, n, conc, reuse).items():
                    rows.append(run_client(cmd, sink, n, name, wl))
    finally:
        sink.stop()
    print_rows(rows)
    bad = [r for r in rows if r.received != r.sent]
    for r in bad:
        print(f"MISMATCH: {r.sender} {r.workload}: sink got {r.received} of {r.sent}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
