"""Reads a benchmark TSV written by run.py and turns it into the table,
the derived comparisons and the issue's targets with PASS or FAIL, as text
for the terminal and as ``benchmarks/RESULTS.md``.

    python3 benchmarks/report.py benchmarks/results/X.tsv  # RESULTS.md from X

Every verdict is computed from the rows in the file: a figure of a row
repeated several times is the median of its repetitions, and a ratio is
the ratio of two such medians from the same run.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass

ANCHOR = "smtp-source"
C_DRIVER = "C driver"
PY_API = "Python API"
PY_STATE = "Python+state"
AIO = "aiosmtplib"
SMTPLIB = "smtplib"
SENDER_ORDER = [ANCHOR, C_DRIVER, PY_API, PY_STATE, AIO, SMTPLIB]

COLUMNS = [
    "rep",
    "size",
    "concurrency",
    "reuse",
    "pipelining",
    "sender",
    "sent",
    "received",
    "seconds",
    "cpu_s",
    "rss_kib",
    "sink_cpu_s",
    "state_calls",
]


@dataclass(frozen=True, order=True)
class Workload:
    """What is sent: message size, connections at once, whether connections
    are reused, and whether the sink offers PIPELINING."""

    size: int
    concurrency: int
    reuse: bool
    pipelining: bool

    @property
    def label(self) -> str:
        size = f"{self.size // 1024}KiB" if self.size % 1024 == 0 else f"{self.size}B"
        return (
            f"{size} c{self.concurrency} {'reuse' if self.reuse else 'conn/msg'} "
            f"{'pipe' if self.pipelining else 'no-pipe'}"
        )

    def sort_key(self) -> tuple[int, bool, bool, int]:
        return (self.size, not self.pipelining, not self.reuse, self.concurrency)


@dataclass(frozen=True)
class Run:
    """One client run: one line of the TSV."""

    rep: int
    workload: Workload
    sender: str
    sent: int
    received: int
    seconds: float
    cpu_s: float
    rss_kib: int
    sink_cpu_s: float
    state_calls: int

    def fields(self) -> list[str]:
        w = self.workload
        return [
            str(self.rep),
            str(w.size),
            str(w.concurrency),
            str(int(w.reuse)),
            str(int(w.pipelining)),
            self.sender,
            str(self.sent),
            str(self.received),
            f"{self.seconds:.4f}",
            f"{self.cpu_s:.6f}",
            str(self.rss_kib),
            f"{self.sink_cpu_s:.4f}",
            str(self.state_calls),
        ]

    @classmethod
    def parse(cls, line: str) -> Run:
        v = dict(zip(COLUMNS, line.rstrip("\n").split("\t"), strict=True))
        return cls(
            rep=int(v["rep"]),
            workload=Workload(
                int(v["size"]),
                int(v["concurrency"]),
                v["reuse"] == "1",
                v["pipelining"] == "1",
            ),
            sender=v["sender"],
            sent=int(v["sent"]),
            received=int(v["received"]),
            seconds=float(v["seconds"]),
            cpu_s=float(v["cpu_s"]),
            rss_kib=int(v["rss_kib"]),
            sink_cpu_s=float(v["sink_cpu_s"]),
            state_calls=int(v["state_calls"]),
        )

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_s / self.sent * 1e6

    @property
    def sink_us(self) -> float:
        return self.sink_cpu_s / self.sent * 1e6

    @property
    def counts_match(self) -> bool:
        return self.received == self.sent


@dataclass(frozen=True)
class Summary:
    """A sender in a workload: the median of each figure over its runs."""

    workload: Workload
    sender: str
    runs: tuple[Run, ...]

    def _median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    @property
    def rate(self) -> float:
        return self._median("rate")

    @property
    def cpu_us(self) -> float:
        return self._median("cpu_us")

    @property
    def rss_kib(self) -> float:
        return self._median("rss_kib")

    @property
    def sink_us(self) -> float:
        return self._median("sink_us")

    @property
    def cpu_spread(self) -> float:
        """(max - min) / median of CPU per message over the runs."""
        values = [r.cpu_us for r in self.runs]
        return (max(values) - min(values)) / self.cpu_us if self.cpu_us else 0.0

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.runs)

    @property
    def received(self) -> int:
        return sum(r.received for r in self.runs)


def summarize(runs: Iterable[Run]) -> dict[tuple[Workload, str], Summary]:
    groups: dict[tuple[Workload, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.workload, run.sender), []).append(run)
    order = sorted(
        groups,
        key=lambda k: (k[0].sort_key(), SENDER_ORDER.index(k[1])),
    )
    return {k: Summary(k[0], k[1], tuple(groups[k])) for k in order}


FIGURES = {
    "msg/s": ("rate", ">="),
    "CPU/msg": ("cpu_us", "<="),
}


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: ``sender``'s figure in ``workload`` over
    ``versus``'s in the same workload, held against ``bound``."""

    sender: str
    versus: str
    figure: str  # a key of FIGURES
    bound: float
    workload: Workload

    @property
    def text(self) -> str:
        op = FIGURES[self.figure][1].replace(">=", "≥").replace("<=", "≤")
        if self.sender == PY_STATE:
            return (
                f"{self.workload.label}: {PY_STATE} {self.figure} "
                f"{op} {self.bound:.2f}x {self.versus} (state costs ≤ "
                f"{(self.bound - 1) * 100:.0f}%)"
            )
        return (
            f"{self.workload.label}: {self.sender} {self.figure} {op} "
            f"{self.bound:g}x {self.versus}"
        )

    def ratio(self, table: dict[tuple[Workload, str], Summary]) -> float | None:
        mine = table.get((self.workload, self.sender))
        theirs = table.get((self.workload, self.versus))
        if mine is None or theirs is None:
            return None
        attr = FIGURES[self.figure][0]
        base = getattr(theirs, attr)
        return getattr(mine, attr) / base if base else None

    def verdict(self, table: dict[tuple[Workload, str], Summary]) -> str:
        ratio = self.ratio(table)
        if ratio is None:
            return "n/a"
        ok = (
            ratio <= self.bound
            if FIGURES[self.figure][1] == "<="
            else (ratio >= self.bound)
        )
        return "PASS" if ok else "FAIL"


def _kib(size: int = 1024, c: int = 10, reuse: bool = True, pipe: bool = True):
    return Workload(size, c, reuse, pipe)


TARGETS = [
    *(
        Target(C_DRIVER, ANCHOR, "CPU/msg", bound, _kib(c=c, pipe=pipe))
        for pipe, bound in ((True, 0.5), (False, 0.8))
        for c in (10, 100)
    ),
    *(
        Target(C_DRIVER, ANCHOR, "msg/s", 0.95, _kib(c=c, pipe=pipe))
        for pipe in (True, False)
        for c in (10, 100)
    ),
    *(
        Target(C_DRIVER, ANCHOR, "CPU/msg", 0.8, _kib(c=c, reuse=False))
        for c in (1, 10, 100)
    ),
    Target(C_DRIVER, ANCHOR, "msg/s", 2.0, _kib(c=1)),
    *(
        t
        for c in (1, 10, 100)
        for t in (
            Target(PY_API, AIO, "CPU/msg", 0.2, _kib(c=c)),
            Target(PY_API, C_DRIVER, "CPU/msg", 1.5, _kib(c=c)),
            Target(PY_API, AIO, "msg/s", 4.0, _kib(c=c)),
        )
    ),
    *(Target(PY_STATE, PY_API, "CPU/msg", 1.15, _kib(c=c)) for c in (1, 10)),
]

COMPARISONS = [
    (PY_API, AIO, "CPU/msg"),
    (PY_API, AIO, "msg/s"),
    (PY_API, C_DRIVER, "CPU/msg"),
    (PY_API, C_DRIVER, "msg/s"),
    (PY_STATE, PY_API, "CPU/msg"),
]


def _ratio(value: float, anchor: float) -> str:
    return f"{value / anchor:.2f}x" if anchor else "-"


def rows(table: dict[tuple[Workload, str], Summary]) -> list[list[str]]:
    """The main table: one row per workload and sender."""
    out = []
    for (workload, sender), s in table.items():
        a = table.get((workload, ANCHOR))
        spread = f"±{s.cpu_spread * 50:.0f}%" if len(s.runs) > 1 else "-"
        out.append(
            [
                workload.label,
                sender,
                str(len(s.runs)),
                f"{s.rate:.0f}",
                f"{s.cpu_us:.1f}",
                spread,
                f"{s.rss_kib / 1024:.1f}",
                f"{s.sink_us:.1f}",
                f"{s.received}/{s.sent}",
                _ratio(s.rate, a.rate) if a else "-",
                _ratio(s.cpu_us, a.cpu_us) if a else "-",
                _ratio(s.rss_kib, a.rss_kib) if a else "-",
                _ratio(s.sink_us, a.sink_us) if a else "-",
            ]
        )
    return out


ROW_HEAD = [
    "workload",
    "sender",
    "n",
    "msg/s",
    "CPU µs/msg",
    "CPU spread",
    "RSS MiB",
    "sink µs/msg",
    "recv/sent",
    "x msg/s",
    "x CPU",
    "x RSS",
    "x sink",
]


def comparisons(table: dict[tuple[Workload, str], Summary]) -> list[list[str]]:
    """Python API against aiosmtplib and the C driver, and Python+state
    against the Python API, in every workload where both ran."""
    workloads = sorted({w for w, _ in table}, key=Workload.sort_key)
    out = []
    for w in workloads:
        cells = []
        for mine, theirs, figure in COMPARISONS:
            a, b = table.get((w, mine)), table.get((w, theirs))
            attr = FIGURES[figure][0]
            cells.append(_ratio(getattr(a, attr), getattr(b, attr)) if a and b else "-")
        if any(c != "-" for c in cells):
            out.append([w.label, *cells])
    return out


COMPARISON_HEAD = [
    "workload",
    *(f"{m} / {t} {f}" for m, t, f in COMPARISONS),
]


def targets(table: dict[tuple[Workload, str], Summary]) -> list[list[str]]:
    out = []
    for t in TARGETS:
        ratio = t.ratio(table)
        out.append(
            [t.text, f"{ratio:.2f}x" if ratio is not None else "-", t.verdict(table)]
        )
    return out


TARGET_HEAD = ["target", "measured", "verdict"]


def text_table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def mismatches(runs: Iterable[Run]) -> list[str]:
    """Every run whose sink count differs from its sent count, or whose
    Python state did not run once per message."""
    bad = []
    for r in runs:
        where = f"{r.sender} {r.workload.label} rep {r.rep}"
        if not r.counts_match:
            bad.append(f"{where}: the sink received {r.received} of {r.sent}")
        if r.sender == PY_STATE and r.state_calls != r.sent:
            bad.append(f"{where}: the state ran {r.state_calls} times for {r.sent}")
    return bad


def render_text(runs: list[Run]) -> str:
    table = summarize(runs)
    return "\n\n".join(
        [
            text_table(ROW_HEAD, rows(table)),
            text_table(COMPARISON_HEAD, comparisons(table)),
            text_table(TARGET_HEAD, targets(table)),
        ]
    )


def load(path: pathlib.Path) -> tuple[dict[str, str], list[Run]]:
    """The facts (``# key: value`` lines) and the runs of a TSV."""
    meta: dict[str, str] = {}
    runs = []
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            key, _, value = line[2:].partition(": ")
            meta[key] = value
        elif line and not line.startswith("rep\t"):
            runs.append(Run.parse(line))
    return meta, runs


def render_markdown(meta: dict[str, str], runs: list[Run], tsv_ref: str) -> str:
    table = summarize(runs)
    facts = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    verdicts = [row[2] for row in targets(table)]
    bad = mismatches(runs)
    check = (
        "Every run's sink count equals its sent count."
        if not bad
        else "**COUNT MISMATCH**:\n\n" + "\n".join(f"- {b}" for b in bad)
    )
    return f"""# Benchmark results

Generated by `benchmarks/report.py` from `{tsv_ref}`
(written by `benchmarks/run.py`); do not edit by hand. How to run and read
it: `benchmarks/README.md`.

{facts}

{check}

## Targets

{verdicts.count("PASS")} PASS, {verdicts.count("FAIL")} FAIL, \
{verdicts.count("n/a")} n/a (a workload this run did not include).

{md_table(TARGET_HEAD, targets(table))}

## Comparisons

Ratios of medians in the same workload (below 1x is cheaper or slower).

{md_table(COMPARISON_HEAD, comparisons(table))}

## All rows

`n` runs per row (interleaved repetitions; figures are medians); CPU is
user + system of the whole client process tree per message, start-up
included; CPU spread is half the range over the runs; `x` columns are
ratios to smtp-source in the same workload.

{md_table(ROW_HEAD, rows(table))}
"""


def display_path(path: pathlib.Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tsv", type=pathlib.Path)
    parser.add_argument(
        "--output",
        type=pathlib.Path,
        default=pathlib.Path(__file__).resolve().parent / "RESULTS.md",
    )
    args = parser.parse_args()
    meta, runs = load(args.tsv)
    args.output.write_text(render_markdown(meta, runs, display_path(args.tsv)))
    print(render_text(runs))
    return 1 if mismatches(runs) else 0


if __name__ == "__main__":
    sys.exit(main())
