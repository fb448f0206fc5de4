"""Several scheduler processes sharing one delivery: ``workers=N``.

The loop and the state table belong to one thread, so more cores mean
more processes.  ``deliver(..., workers=N)`` and ``deliver_async(...,
workers=N)`` fork N worker processes, each with its own C scheduler, and
feed them from one queue that the calling process keeps:

- **Fork, after registration.**  A worker is a copy of the caller as it
  stood: every state registered so far, C or Python (the callables live in
  the copied memory), and the message list itself.  So only message
  indexes travel to a worker, 4 bytes each, and no message is copied
  ahead of need.  A state registered later is in no worker.
- **One destination, one connection limit.**  ``concurrency`` is split
  between the workers (20 over 3 workers: 7, 7 and 6), as it protects the
  server, whatever the number of processes; so there are never more
  workers than ``concurrency``, nor than messages.
- **One queue, small windows.**  A worker holds at most ``_window()``
  messages it has not reported; the parent hands it the next index as soon
  as it reports one, so a slow or stalled worker gets less work, and a
  worker that dies takes little with it.
- **Results** come back as one ``marshal`` frame per loop turn and become
  the same :class:`~smtpstate.MessageResult` objects as in one process,
  returned in input order by ``deliver``.  Engine events are forwarded in
  the same frames and written by the parent, the one writer of the log
  and the JSON file.
- **A worker that dies** (crash, signal, exit) loses nothing silently:
  every message it took and did not report gets a TRANSIENT result, error
  ``SMTP_EWORKER``, whose text says how the worker ended.  Such a message
  may have reached the server before the worker died, so it is never
  reported delivered, and a retry may duplicate it.  Messages no worker
  took yet go to the others; when none is left they are reported the same
  way, unsent.  The parent reaps every worker it forked.
- **Threads.**  Forking is refused, before any process starts, off the
  library's owner thread (the one that imported smtpstate:
  :class:`~smtpstate.errors.WrongThreadError`) and while any scheduler is
  open in the process (:class:`~smtpstate.errors.SmtpStateError`): a worker
  would hold copies of its connections.  A worker has only the calling
  thread; the caller's other threads (an embedded sink, say) go on in the
  parent alone.  A lock one of them held at the fork stays held in the
  worker, so a worker's own code touches only the engine, its messages and
  its two pipes, and leaves through ``os._exit`` (a state's callables are
  on their own there).
- **Signals.**  Workers ignore SIGINT: on Ctrl-C the parent's
  ``KeyboardInterrupt`` (or any error, or closing the async generator)
  sends SIGTERM to every worker still running and reaps it.  A worker
  whose parent is gone stops at once: its queue pipe reaches its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import marshal
import os
import select
import selectors
import signal
import struct
import sys
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ._smtpstate_cffi import lib
from .delivery import (
    BounceClass,
    Destination,
    Message,
    MessageResult,
    Outcome,
    RecipientResult,
    Settings,
    _Engine,
    message_result,
)
from .errors import (
    InvalidArgumentError,
    InvalidTypeError,
    SmtpStateError,
    WrongThreadError,
)
from .events import EventSink, logger
from .states import Stage

__all__ = ["MAX_WORKERS", "check_count", "deliver_async", "results"]

#: Beyond a few per core more processes only add overhead; the bound keeps
#: a typo such as 1000 from forking a thousand.
MAX_WORKERS = 64

# Every index in a queue pipe is one its worker has not reported, and a
# window is at most 1,000, so at most 4,004 unread bytes wait in a pipe:
# under the 4,096 a pipe holds even at its smallest, so the parent's
# writes never block.
_MAX_WINDOW = 1000
_INDEX = struct.Struct("<I")
_END = 0xFFFFFFFF
_FRAME = struct.Struct("<I")
_READ_SIZE = 1 << 18
# A worker's pipe ends when it exits, a moment before it can be reaped.
_REAP_GRACE = 5.0
_EX_SOFTWARE, _EX_ORPHANED = 70, 75


def check_count(workers: object) -> int:
    """``workers`` as a count of processes: an int from 1 to MAX_WORKERS."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise InvalidTypeError(
            f"workers must be an int, not {type(workers).__name__} (rule: workers)"
        )
    if not 1 <= workers <= MAX_WORKERS:
        raise InvalidArgumentError(
            f"workers={workers}: use 1 to {MAX_WORKERS} (rule: workers)"
        )
    return workers


def _check_may_fork() -> None:
    if lib.smtp_library_init() == lib.SMTP_ETHREAD:
        raise WrongThreadError(
            "workers fork only on the thread that imported smtpstate: a "
            "worker keeps just the forking thread, and the engine runs only "
            "on its owner (rule: owner thread)"
        )
    if _Engine.live:
        raise SmtpStateError(
            f"{_Engine.live} scheduler(s) open in this process; workers fork "
            "only when none is, or they would hold copies of its connections "
            "(rule: fork before any scheduler runs)",
            lib.SMTP_EBUSY,
        )


def _window(settings: Settings) -> int:
    """Enough unreported messages to keep every connection fed between two
    of the parent's refills, and no more than the worker's queue holds."""
    return max(1, min(_MAX_WINDOW, settings.queue_capacity,
                      4 * settings.concurrency + 16))  # fmt: skip


def _how_it_ended(pid: int, status: int | None) -> str:
    if status is None:
        return f"worker process {pid} ended (its status was taken elsewhere)"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "an unnamed signal"
        return f"worker process {pid} was killed by signal {number} ({name})"
    return (
        f"worker process {pid} exited with status {os.waitstatus_to_exitcode(status)}"
    )


# ---- the parent ----------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    pid: int
    queue: int  # write end: indexes for the worker
    results: int  # read end: frames from the worker
    window: int  # most messages it may hold unreported
    taken: set[int] = field(default_factory=set)  # given, not yet reported
    buffer: bytearray = field(default_factory=bytearray)
    ended: bool = False  # the end marker was sent, or the worker is gone
    reaped: bool = False
    status: int | None = None


class _Pool:
    """The parent's side: the queue, the workers and what they reported."""

    def __init__(
        self,
        items: list[Message],
        dest: Destination,
        settings: Settings,
        sink: EventSink | None,
    ) -> None:
        self.items = items
        self.dest = dest
        self.settings = settings
        self.sink = sink
        self.next = 0
        self.workers: list[_Worker] = []
        self.last_end = "no worker process started"

    # -- starting and stopping ------------------------------------------------

    def start(self, count: int) -> None:
        """Forks up to ``count`` workers; they wait for indexes, so no
        connection opens before every worker exists (none inherits another's
        sockets).

        ``concurrency`` is the destination's limit, not a process's: it is
        split between the workers, so there are never more workers than
        connections allowed (or than messages)."""
        total = self.settings.concurrency
        count = min(count, len(self.items), total)
        for stream in (sys.stdout, sys.stderr):
            # Whatever is buffered now would be written again by each worker.
            with contextlib.suppress(Exception):
                stream.flush()
        if self.sink is not None and self.sink.json_file is not None:
            self.sink.json_file.flush()
        for k in range(count):
            own = dataclasses.replace(
                self.settings, concurrency=total // count + (k < total % count)
            )
            queue_r, queue_w = os.pipe()
            try:
                results_r, results_w = os.pipe()
            except OSError:
                os.close(queue_r)
                os.close(queue_w)
                raise
            try:
                pid = os.fork()
            except OSError:
                for fd in (queue_r, queue_w, results_r, results_w):
                    os.close(fd)
                raise
            if pid == 0:
                _worker_process(self, own, queue_r, results_w, (queue_w, results_r))
            os.close(queue_r)
            os.close(results_w)
            self.workers.append(_Worker(pid, queue_w, results_r, _window(own)))
        # The first round is dealt evenly, or a short list would all go to
        # the first worker; from then on each takes as it reports.
        share = -(-len(self.items) // max(1, count))
        for worker in self.workers:
            self._refill(worker, share)

    def stop(self) -> None:
        """SIGTERM to every worker not yet reaped, then reaps each and
        closes the pipes.  Safe to call more than once."""
        # A second Ctrl-C must not leave workers behind: it waits, blocked,
        # until every worker is reaped, and is raised then.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for worker in self.workers:
                if not worker.reaped:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGTERM)
            for worker in self.workers:
                self._reap(worker)
                for fd in (worker.queue, worker.results):
                    if fd >= 0:
                        os.close(fd)
                worker.queue = worker.results = -1
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _reap(self, worker: _Worker) -> None:
        if worker.reaped:
            return
        deadline = time.monotonic() + _REAP_GRACE
        try:
            while True:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() >= deadline:
                    # Unreaped, so the pid is still this worker's.
                    os.kill(worker.pid, signal.SIGKILL)
                    pid, status = os.waitpid(worker.pid, 0)
                    break
                time.sleep(0.005)
            worker.status = status
        except ChildProcessError:
            worker.status = None  # a SIGCHLD handler of the caller's took it
        worker.reaped = True
        worker.ended = True

    @property
    def running(self) -> bool:
        return any(not w.reaped for w in self.workers)

    # -- the queue ------------------------------------------------------------

    def _refill(self, worker: _Worker, limit: int = _MAX_WINDOW) -> None:
        if worker.ended:
            return
        room = max(0, min(limit, worker.window - len(worker.taken)))
        first, last = self.next, min(len(self.items), self.next + room)
        out = b"".join(_INDEX.pack(i) for i in range(first, last))
        if last == len(self.items):
            out += _INDEX.pack(_END)
        if not out:
            return
        try:
            os.write(worker.queue, out)
        except BrokenPipeError:
            worker.ended = True  # its end of file follows; the rest go elsewhere
            return
        worker.taken.update(range(first, last))
        self.next = last
        worker.ended = last == len(self.items)

    # -- results --------------------------------------------------------------

    def read(self, worker: _Worker) -> list[tuple[int, MessageResult]]:
        """Reads what ``worker`` sent; at its end, reaps it and settles what
        it took and, if it was the last, what nobody took."""
        data = os.read(worker.results, _READ_SIZE)
        if not data:
            return self._lost(worker)
        worker.buffer += data
        done: list[tuple[int, MessageResult]] = []
        at = 0
        view = memoryview(worker.buffer)
        while len(view) - at >= _FRAME.size:
            (size,) = _FRAME.unpack_from(view, at)
            if len(view) - at - _FRAME.size < size:
                break
            start = at + _FRAME.size
            records, events = marshal.loads(view[start : start + size])
            at = start + size
            for index, rows in records:
                worker.taken.remove(index)
                message = self.items[index]
                done.append((index, message_result(message, tuple(rows))))
            if self.sink is not None:
                for info, fields in events:
                    self.sink.emit(info, fields)
        view.release()
        del worker.buffer[:at]
        self._refill(worker)
        return done

    def _lost(self, worker: _Worker) -> list[tuple[int, MessageResult]]:
        self._reap(worker)
        how = _how_it_ended(worker.pid, worker.status)
        self.last_end = how
        why = f"{how} before reporting this message; it may have reached the server"
        done = [(i, self._settle(i, why)) for i in sorted(worker.taken)]
        worker.taken.clear()
        if not self.running and self.next < len(self.items):
            why = f"not sent: no worker process left ({self.last_end})"
            done += [
                (i, self._settle(i, why)) for i in range(self.next, len(self.items))
            ]
            self.next = len(self.items)
        return done

    def _settle(self, index: int, why: str) -> MessageResult:
        message = self.items[index]
        return MessageResult(
            message,
            tuple(
                RecipientResult(
                    rcpt, Outcome.TRANSIENT, 0, "", why, Stage.UNKNOWN, "",
                    BounceClass.UNDETERMINED, "SMTP_EWORKER", 0,
                )
                for rcpt in message.recipients
            ),
        )  # fmt: skip


def _prepare(
    items: list[Message],
    dest: Destination,
    settings: Settings,
    sink: EventSink | None,
    count: object,
) -> _Pool:
    check_count(count)
    _check_may_fork()
    # A setting the engine refuses is refused here, once, before any fork.
    _Engine(dest, settings, None).close()
    return _Pool(items, dest, settings, sink)


def _run(pool: _Pool, count: int) -> Iterator[tuple[int, MessageResult]]:
    try:
        pool.start(count)
        with selectors.DefaultSelector() as selector:
            for worker in pool.workers:
                selector.register(worker.results, selectors.EVENT_READ, worker)
            while pool.running:
                for key, _ in selector.select():
                    yield from pool.read(key.data)
                    if key.data.reaped:
                        selector.unregister(key.fd)
    finally:
        pool.stop()


def results(
    items: list[Message],
    dest: Destination,
    settings: Settings,
    sink: EventSink | None,
    count: int,
) -> Iterator[tuple[int, MessageResult]]:
    """``smtpstate.deliver`` and ``deliver_iter`` with ``workers=count``:
    (index, result) pairs as the workers report them."""
    yield from _run(_prepare(items, dest, settings, sink, count), count)


async def deliver_async(
    items: list[Message],
    dest: Destination,
    settings: Settings,
    sink: EventSink | None,
    count: int,
) -> AsyncIterator[MessageResult]:
    """``smtpstate.deliver_async(..., workers=count)``: results as they come,
    the workers' pipes read on the running asyncio loop."""
    pool = _prepare(items, dest, settings, sink, count)
    loop = asyncio.get_running_loop()
    ready: deque[_Worker] = deque()
    wake = asyncio.Event()

    def readable(worker: _Worker) -> None:
        loop.remove_reader(worker.results)
        ready.append(worker)
        wake.set()

    watched: list[_Worker] = []
    try:
        pool.start(count)
        for worker in pool.workers:
            loop.add_reader(worker.results, readable, worker)
            watched.append(worker)
        while pool.running:
            await wake.wait()
            wake.clear()
            while ready:
                worker = ready.popleft()
                done = pool.read(worker)
                if worker.reaped:
                    watched.remove(worker)
                else:
                    loop.add_reader(worker.results, readable, worker)
                for _, result in done:
                    yield result
    finally:
        for worker in watched:
            loop.remove_reader(worker.results)
        pool.stop()


# ---- a worker ------------------------------------------------------------------


class _ForwardedEvents(EventSink):
    """A worker's event sink: keeps the fields for the parent to write."""

    def __init__(self, log: bool, json: bool) -> None:
        super().__init__(log, None)
        self.json = json
        self.pending: list[tuple[bool, dict[str, Any]]] = []

    def emit(self, info: bool, fields: dict[str, Any]) -> None:
        wanted = self.log and logger.isEnabledFor(
            logging.INFO if info else logging.DEBUG
        )
        if wanted or self.json:
            self.pending.append((info, fields))


class _WorkerEngine(_Engine):
    """An engine whose finished messages stay rows of plain values, each
    ``(index, [row per recipient])``: the parent makes the result objects."""

    @staticmethod
    def _finish(message: Message, rows: tuple[Any, ...]) -> Any:
        return rows


def _worker_process(
    pool: _Pool,
    settings: Settings,
    queue: int,
    results: int,
    own_parent_ends: tuple[int, int],
) -> NoReturn:
    """A forked worker's whole life; never returns into the caller's code."""
    status = _EX_SOFTWARE
    try:
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The parent's ends of every pipe: held here, they would hide the
        # parent's death from this worker and a sibling's death from the
        # parent.
        for fd in own_parent_ends:
            os.close(fd)
        for sibling in pool.workers:
            os.close(sibling.queue)
            os.close(sibling.results)
        events = None
        if pool.sink is not None:
            events = _ForwardedEvents(pool.sink.log, pool.sink.json_file is not None)
        status = _serve(pool.items, pool.dest, settings, events, queue, results)
    except BrokenPipeError:
        status = _EX_ORPHANED
    except BaseException:
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)


def _serve(
    items: list[Message],
    dest: Destination,
    settings: Settings,
    events: _ForwardedEvents | None,
    queue: int,
    results: int,
) -> int:
    engine = _WorkerEngine(dest, settings, events)
    poller = select.poll()
    poller.register(queue, select.POLLIN)
    poller.register(engine.fd, select.POLLIN)
    waiting: deque[int] = deque()
    partial = b""
    ended = False
    try:
        while not (ended and not waiting and not engine.in_flight):
            for fd, _ in poller.poll(engine.next_deadline()):
                if fd != queue:
                    continue
                data = os.read(queue, 1 << 16)
                if not data:
                    return _EX_ORPHANED  # the parent is gone: stop at once
                data = partial + data
                whole = len(data) - len(data) % _INDEX.size
                partial = data[whole:]
                for (index,) in _INDEX.iter_unpack(data[:whole]):
                    if index == _END:
                        ended = True
                        poller.unregister(queue)
                    else:
                        waiting.append(index)
            while waiting and engine.submit(waiting[0], items[waiting[0]]):
                waiting.popleft()
            _report(results, engine.step(0), events)
        engine.drain()
        while not engine.idle:
            _report(results, engine.step(-1), events)
    finally:
        done = engine.close()
    _report(results, done, events)
    return 0


def _report(fd: int, done: list[Any], events: _ForwardedEvents | None) -> None:
    forwarded: list[tuple[bool, dict[str, Any]]] = []
    if events is not None:
        forwarded, events.pending = events.pending, []
    if not done and not forwarded:
        return
    payload = marshal.dumps((done, forwarded))
    out = memoryview(_FRAME.pack(len(payload)) + payload)
    while out:
        out = out[os.write(fd, out) :]
