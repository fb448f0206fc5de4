"""benchmarks/run.py end to end with tiny counts: every sender of the
quick matrix sends through smtp-sink, the sink's own counts match what was
sent, and the table, the TSV and the report come out.  Figures are not
judged here; a benchmark never gates a test."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

from servers import smtp_sink_available

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402

SENDERS = {"smtp-source", "C driver", "Python API", "Python+state"}
SENDERS |= {"aiosmtplib", "smtplib"}


def printed_table(stdout: str) -> list[dict[str, str]]:
    """The rows of the table run.py prints, by the names in its header."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("workload "))
    names = re.split(r" {2,}", lines[start].strip())
    rows = []
    for line in lines[start + 2 :]:
        cells = re.split(r" {2,}", line.strip())
        if len(cells) != len(names):
            break
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def test_report_names_every_count_mismatch():
    w = report.Workload(1024, 10, True, True)
    good = report.Run(1, w, "C driver", 100, 100, 0.1, 0.01, 2048, 0.01, 0)
    short = report.Run(1, w, "smtp-source", 100, 99, 0.1, 0.01, 2048, 0.01, 0)
    idle = report.Run(2, w, "Python+state", 100, 100, 0.1, 0.01, 2048, 0.01, 3)
    bad = report.mismatches([good, short, idle])
    assert bad == [
        "smtp-source 1KiB c10 reuse pipe rep 1: the sink received 99 of 100",
        "Python+state 1KiB c10 reuse pipe rep 2: the state ran 3 times for 100",
    ]
    text = report.render_markdown({}, [good, short, idle], "x.tsv")
    assert "**COUNT MISMATCH**" in text
    assert "Every run's sink count equals" not in text


def test_run_line_round_trips_through_the_tsv():
    w = report.Workload(102400, 100, False, False)
    run = report.Run(3, w, "Python API", 600, 600, 1.25, 0.5, 40960, 0.2, 0)
    assert report.Run.parse("\t".join(run.fields())) == run


@pytest.mark.skipif(not smtp_sink_available(), reason="smtp-sink not installed")
@pytest.mark.skipif(
    importlib.util.find_spec("aiosmtplib") is None,
    reason="aiosmtplib not installed (pip install -r benchmarks/requirements.txt)",
)
def test_quick_run_counts_match_for_every_sender(c_build, tmp_path):
    tsv, md = tmp_path / "runs.tsv", tmp_path / "RESULTS.md"
    out = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--scale", "0.02"]
        + ["--tsv", str(tsv), "--report", str(md), "--max-minutes", "2"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    meta, runs = report.load(tsv)
    assert {
        "commit",
        "CPU",
        "cores",
        "kernel",
        "Postfix (smtp-sink, smtp-source)",
    } <= set(meta)
    assert {r.sender for r in runs} == SENDERS
    assert report.mismatches(runs) == []
    assert all(r.received == r.sent > 0 for r in runs)
    assert all(r.state_calls == r.sent for r in runs if r.sender == "Python+state")
    # aiosmtplib and smtplib do not pipeline: only with PIPELINING offered.
    no_pipe = {r.sender for r in runs if not r.workload.pipelining}
    assert no_pipe == SENDERS - {"aiosmtplib", "smtplib"}
    labels = {r.workload.label for r in runs}
    for label in labels:
        assert label in out.stdout
    # Issue 3: the C driver's messages per second and CPU per message are
    # printed beside smtp-source's, for every workload of the same run.
    printed = {
        (row["workload"], row["sender"])
        for row in printed_table(out.stdout)
        if float(row["msg/s"]) > 0 and float(row["CPU µs/msg"]) > 0
    }
    for label in labels:
        assert {(label, "smtp-source"), (label, "C driver")} <= printed, label
    # Every target of the issue is covered by the quick matrix and judged.
    verdicts = [line for line in md.read_text().splitlines() if "x |" in line]
    targets = [v for v in verdicts if v.endswith(("| PASS |", "| FAIL |"))]
    assert len(targets) == len(report.TARGETS)
    assert "Every run's sink count equals its sent count." in md.read_text()
