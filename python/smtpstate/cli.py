"""The ``smtpstate`` command: send RFC 5322 files through the engine.

    smtpstate                                # the bundled samples, embedded sink
    smtpstate --from a@x --to b@y FILE...    # explicit envelope
    smtpstate -t FILE...                     # envelope from the headers
    smtpstate --server mx.example:25 -t FILE...
    smtpstate --workers 4 -t FILE...         # four sending processes

With no ``--server`` an embedded aiosmtpd sink on loopback receives the
messages and keeps them in a folder it names.  One ``key=value`` line per
recipient outcome goes to standard output.  Exit status: 0 all delivered,
75 only transient failures, 1 any permanent failure, 64 usage error, 130
interrupted (a recipient without a line has no known result).

``--workers N`` forks N sending processes once the ``--state`` modules are
loaded, so each has them; the workers take messages from one queue kept by
this process, which prints every line.  A message whose worker died before
reporting it gets a transient line with ``error=SMTP_EWORKER`` (exit 75).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import os
import pathlib
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import NoReturn

from . import delivery, envelope
from .delivery import Message, MessageResult, Outcome
from .errors import InvalidArgumentError
from .events import format_fields
from .sink import EmbeddedSink
from .workers import MAX_WORKERS

EX_OK, EX_PERMANENT, EX_USAGE, EX_TEMPFAIL, EX_INTERRUPTED = 0, 1, 64, 75, 130
SAMPLES = pathlib.Path(__file__).resolve().parent / "samples"
PROGRESS_EVERY = 2.0


class UsageError(Exception):
    """A mistake on the command line or in a message's headers."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"smtpstate: {message}", file=sys.stderr)
        raise SystemExit(EX_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="smtpstate",
        description="Send RFC 5322 files through the smtpstate engine to one "
        "server, or to an embedded sink on loopback, and print one key=value "
        "line per recipient.",
        epilog="Exit status: 0 all delivered, 75 only transient failures, 1 any "
        "permanent failure, 64 usage error (nothing sent), 130 interrupted (a "
        "recipient without a line has no known result).",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="RFC 5322 messages; with no FILE and none of --from, --to and -t, "
        "the bundled samples",
    )
    p.add_argument("--from", dest="sender", metavar="ADDR", help="envelope sender")
    p.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="ADDR",
        help="envelope recipient (repeat for more)",
    )
    p.add_argument(
        "-t",
        action="store_true",
        dest="from_headers",
        help="like sendmail -t: recipients from To, Cc, Bcc (Bcc "
        "removed); sender from Return-Path, Sender or a single From",
    )
    p.add_argument(
        "--server",
        metavar="HOST[:PORT]",
        help="deliver here instead of the embedded sink (port 25 by default; "
        "[V6]:PORT for IPv6)",
    )
    p.add_argument("--helo", metavar="NAME", help="the EHLO name")
    p.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (name or .py path) that registers states",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=20,
        metavar="N",
        help="connections at once (default 20)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes, each with its own scheduler and connections "
        f"(1 to {MAX_WORKERS}; default 1)",
    )
    p.add_argument(
        "--timeout",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="a deadline, e.g. banner=30 or idle=5",
    )
    p.add_argument(
        "--sink-dir",
        metavar="DIR",
        help="folder for the embedded sink (only without --server; default: a "
        "new temporary folder)",
    )
    p.add_argument(
        "--log-events",
        action="store_true",
        help="engine events to standard error as key=value lines",
    )
    p.add_argument("--json-events", metavar="FILE", help="engine events as JSON lines")
    p.add_argument("--quiet", action="store_true", help="no per-recipient lines")
    p.add_argument(
        "--progress",
        type=float,
        default=PROGRESS_EVERY,
        metavar="SECONDS",
        help="seconds between progress lines on standard error (default "
        f"{PROGRESS_EVERY:g}; 0: after every message)",
    )
    return p  # fmt: skip


def _messages(
    args: argparse.Namespace, cleanup: contextlib.ExitStack
) -> list[tuple[str, Message]]:
    """The messages to send; copies made for -t live until `cleanup` ends."""
    files = [pathlib.Path(f) for f in args.files]
    from_headers = args.from_headers
    if not files:
        # An envelope option without a FILE is most likely a forgotten
        # argument: sending the samples to that server or address instead
        # would be a silent accident.
        if args.sender is not None or args.to or from_headers:
            raise UsageError(
                "no FILE given; the bundled samples are sent only when no "
                "FILE and none of --from, --to and -t is given"
            )
        files = sorted(SAMPLES.glob("*.eml"))
        from_headers = True
    if from_headers and (args.sender or args.to):
        raise UsageError("-t takes the envelope from the headers; drop --from/--to")
    if not from_headers and not (args.sender is not None and args.to):
        raise UsageError("give --from and --to, or -t")
    if not from_headers:
        _check_envelope_options(args.sender, args.to)
    out = []
    spool = None
    if from_headers:
        spool = cleanup.enter_context(
            tempfile.TemporaryDirectory(prefix="smtpstate-t-")
        )
    for path in files:
        if not path.is_file():
            raise UsageError(f"{path}: not a readable file")
        try:
            if spool is not None:
                sender, rcpts, send = envelope.from_file(str(path), spool)
                out.append((str(path), Message(sender, rcpts, send, id=str(path))))
            else:
                out.append(
                    (str(path), Message(args.sender, args.to, path, id=str(path)))
                )
        except (ValueError, TypeError, OSError) as exc:
            raise UsageError(f"{path}: {exc}") from None
    return out


def _check_envelope_options(sender: str, rcpts: Sequence[str]) -> None:
    """The --from/--to addresses, checked once and named as options: an
    error here is no file's."""
    for option, value in [("--from", sender)] + [("--to", r) for r in rcpts]:
        try:
            value.encode()
        except UnicodeEncodeError:
            # The command line's bytes were not UTF-8: show them as given.
            raise UsageError(
                f"{option} {os.fsencode(value)!r} is not valid UTF-8 (rule: address)"
            ) from None
        if option == "--to" and not value:
            raise UsageError("--to '' is empty (rule: address)")
        try:
            delivery._check_address(option, value)
        except (ValueError, TypeError) as exc:
            raise UsageError(str(exc)) from None


# ---- options -------------------------------------------------------------------


def _server(spec: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?", spec)
    if match is None:
        raise UsageError(f"bad --server {spec!r}; use HOST, HOST:PORT or [V6]:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or 25)
    if not 0 < port < 65536:
        raise UsageError(f"bad port in --server {spec!r}")
    return host, port


def _timeouts(specs: Sequence[str]) -> dict[str, float]:
    out = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        try:
            seconds = float(value)
        except ValueError:
            raise UsageError(f"bad --timeout {spec!r}; use NAME=SECONDS") from None
        if name not in delivery.TIMEOUT_NAMES:
            known = ", ".join(delivery.TIMEOUT_NAMES)
            raise UsageError(f"bad --timeout {spec!r}: no timeout {name!r} ({known})")
        if not 0 < seconds <= 86400:
            raise UsageError(f"bad --timeout {spec!r}: seconds must be in (0, 86400]")
        out[name] = seconds
    return out


def _check_options(args: argparse.Namespace) -> None:
    """Checks what the engine would refuse, before anything starts."""
    if not 1 <= args.concurrency <= 100_000:
        raise UsageError(f"--concurrency {args.concurrency}: use 1 to 100000")
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers {args.workers}: use 1 to {MAX_WORKERS}")
    if args.helo is not None and (
        not args.helo or any(ord(c) <= 0x20 or c in "<>\x7f" for c in args.helo)
    ):
        raise UsageError(f"--helo {args.helo!r}: no spaces, controls or brackets")
    if not 0 <= args.progress <= 86400:  # also refuses nan
        raise UsageError(
            f"--progress {args.progress:g}: use 0 (after every message) to 86400 "
            "seconds"
        )
    if args.sink_dir is not None and args.server:
        raise UsageError(
            "--sink-dir is for the embedded sink, which --server replaces; "
            "drop one of them"
        )
    if (
        args.sink_dir is not None
        and pathlib.Path(args.sink_dir).exists()
        and (not pathlib.Path(args.sink_dir).is_dir())
    ):
        raise UsageError(f"--sink-dir {args.sink_dir}: not a folder")
    args.timeouts = _timeouts(args.timeout)


def _load_states(modules: Sequence[str]) -> None:
    for spec in modules:
        try:
            if spec.endswith(".py"):
                path = pathlib.Path(spec)
                module_spec = importlib.util.spec_from_file_location(path.stem, path)
                if module_spec is None or module_spec.loader is None:
                    raise ImportError(f"cannot load {spec}")
                module = importlib.util.module_from_spec(module_spec)
                module_spec.loader.exec_module(module)
            else:
                importlib.import_module(spec)
        except Exception as exc:
            raise UsageError(f"--state {spec}: {type(exc).__name__}: {exc}") from None


# ---- running -----------------------------------------------------------------


def _line(name: str, result: MessageResult) -> list[str]:
    return [
        format_fields({
            "file": name,
            "rcpt": r.recipient,
            "result": r.outcome.name.lower(),
            "code": r.code,
            "enhanced": r.enhanced or "-",
            "stage": r.stage,
            "state": r.state or "-",
            "class": r.bounce_class,
            "error": r.error or "-",
            "session": f"{r.session_id:x}",
            "text": r.text,
        })
        for r in result.recipients
    ]  # fmt: skip


async def _send(args: argparse.Namespace, items: list[tuple[str, Message]],
                host: str, port: int) -> list[MessageResult]:  # fmt: skip
    results: list[MessageResult] = []
    start = last = time.monotonic()
    try:
        json_file = open(args.json_events, "w") if args.json_events else None
    except OSError as exc:
        raise UsageError(f"--json-events: {exc}") from None
    try:
        async for result in delivery.deliver_async(
            [m for _, m in items], host, port, helo=args.helo,
            concurrency=args.concurrency, timeouts=args.timeouts,
            log_events=args.log_events, json_events=json_file,
            workers=args.workers,
        ):  # fmt: skip
            results.append(result)
            if not args.quiet:
                print("\n".join(_line(result.message.id, result)), flush=True)
            now = time.monotonic()
            if now - last >= args.progress:
                last = now
                _progress(results, len(items), now - start)
    finally:
        if json_file is not None:
            json_file.close()
    return results


def _progress(results: list[MessageResult], total: int, elapsed: float) -> None:
    counts = {o: 0 for o in Outcome}
    for result in results:
        for r in result.recipients:
            counts[r.outcome] += 1
    print(
        f"progress messages={len(results)}/{total} "
        f"delivered={counts[Outcome.DELIVERED]} transient={counts[Outcome.TRANSIENT]} "
        f"permanent={counts[Outcome.PERMANENT]} rate={len(results) / elapsed:.0f}/s",
        file=sys.stderr,
        flush=True,
    )


def _exit_status(results: list[MessageResult]) -> int:
    outcomes = {r.outcome for result in results for r in result.recipients}
    if Outcome.PERMANENT in outcomes:
        return EX_PERMANENT
    if Outcome.TRANSIENT in outcomes:
        return EX_TEMPFAIL
    return EX_OK


def run(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns its exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.log_events:
            import logging

            logging.basicConfig(
                stream=sys.stderr, level=logging.INFO, format="%(message)s"
            )
        _check_options(args)
        _load_states(args.state)
        with contextlib.ExitStack() as cleanup:
            items = _messages(args, cleanup)
            if args.server:
                host, port = _server(args.server)
                results = asyncio.run(_send(args, items, host, port))
            else:
                try:
                    sink = EmbeddedSink(args.sink_dir)
                except OSError as exc:
                    raise UsageError(f"--sink-dir: {exc}") from None
                cleanup.enter_context(sink)
                print(f"sink=127.0.0.1:{sink.port} folder={sink.folder}",
                      file=sys.stderr)  # fmt: skip
                results = asyncio.run(_send(args, items, "127.0.0.1", sink.port))
    except (UsageError, InvalidArgumentError) as exc:
        print(f"smtpstate: {exc}", file=sys.stderr)
        return EX_USAGE
    except KeyboardInterrupt:
        print("smtpstate: interrupted; a message without an outcome line has "
              "no known result (its end of data may have reached the server)",
              file=sys.stderr)  # fmt: skip
        return EX_INTERRUPTED
    status = _exit_status(results)
    delivered = sum(r.delivered for result in results for r in result.recipients)
    total = sum(len(result.recipients) for result in results)
    print(f"summary messages={len(results)} recipients={total} delivered={delivered} "
          f"exit={status}", file=sys.stderr)  # fmt: skip
    return status


def main() -> None:
    """Console entry point."""
    raise SystemExit(run())
