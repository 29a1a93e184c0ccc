"""Cases in worker processes, under a supervisor: no user code can take the run down.

The supervisor (the command's own process) runs no user code.  Its workers come from a fork
server (:mod:`rnncheck.zygote`): one clean process, started once per run with torch and rnncheck
imported, forks each worker, so that a worker costs a fork and not an import of torch.

- **Collection.**  One worker imports the model files in turn and sends each file's case names.
- **Cases.**  One worker per model file imports it and runs the cases the supervisor hands it, one
  at a time; with ``-n N`` up to N workers run at once, a file with many cases left getting a
  second worker.  A file's changes to torch, to ``sys.modules`` or to any global die with its
  worker, so they cannot reach another file's cases.  Inside one file the in-process guard
  (:func:`rnncheck.usercode.case_guard`) still puts back what a case changed.
- **Death.**  A worker that dies (``os._exit``, a signal, a segfault, the out-of-memory killer)
  makes the case it was running ``error``, naming the cause and the call into user code it was in
  (the worker writes that to a small shared file as it goes, see :class:`Board`).  A fresh worker
  takes the file's remaining cases.
- **The hard timeout from outside.**  Past ``--timeout`` the worker's own alarm stops the case; a
  case that defeats it (a bare ``except:``, ``signal.alarm(0)``, a long C call) is stopped by the
  supervisor a grace period later, by killing its worker.
- **Output.**  What user code prints reaches the supervisor's own stdout and stderr through the
  worker's pipe, so that it goes where it would in-process.  A worker ends with ``os._exit``, so a
  thread the user's code left running cannot keep the run from exiting; the case that left it says so.
"""

from __future__ import annotations

import mmap
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from pathlib import Path

from . import usercode, zygote
from .collect import CaseDef, FileProblem, load_file
from .errors import safe_str
from .findings import BaselineResult, CaseResult, CheckName, Finding, IsolationResult, Kind, Verdict
from .options import Options

#: bytes of the board each worker writes its current activity to
BOARD_BYTES = 512
#: how often the supervisor wakes with nothing to read (progress display, deadlines)
TICK = 0.1


def grace(timeout: float) -> float:
    """How long past ``--timeout`` the supervisor waits for the worker's own alarm before it kills the worker."""
    return min(30.0, max(1.0, 0.25 * timeout))


def warm_up() -> None:
    """In the fork server, before its first fork: check a few small cases once, on one thread.

    torch initializes much lazily (operator dispatch, autograd, the kernels a case's checks
    reach), and a fresh process pays that in its first case (0.5 to 0.8 s measured here).  Paid
    once in the server, every worker starts warm.  One thread, so that no thread pool runs before
    a fork (its child would hang in its first parallel region).
    """
    import numpy as np
    import torch

    from .cases.numpy_case import NumpyCase
    from .cases.torch_case import TorchCase
    from .runner import verify_case

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    one = Options(threads=1)  # also over OMP_NUM_THREADS, which the thread policy would otherwise follow
    try:
        x = torch.randn(2, 5, 3, dtype=torch.float64)
        for layer in (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU):
            for dtype in (torch.float64, torch.float32):
                model = layer(3, 4, batch_first=True).to(dtype)
                verify_case(TorchCase(model, inputs=x.to(dtype)), one)
        w = {"w": np.ones(3)}
        verify_case(NumpyCase(w, lambda p: float((p["w"] ** 2).sum()), lambda p: {"w": 2 * p["w"]}), one)
    except Exception:  # noqa: BLE001, S110 - warming up is only a saving; a worker does the same work cold
        pass
    finally:
        torch.set_num_threads(before)


# --- the board: what a worker is doing, readable after it died ------------------------------


class Board:
    """A small file both sides map: the worker writes which call into user code runs, the supervisor reads it."""

    def __init__(self, path: Path, create: bool = False) -> None:
        self.path = path
        if create:
            path.write_bytes(b"\0" * BOARD_BYTES)
        self._file = open(path, "r+b")  # noqa: SIM115 - mapped for the worker's lifetime
        self._map = mmap.mmap(self._file.fileno(), BOARD_BYTES)

    def write(self, text: str | None) -> None:
        data = (text or "").encode("utf-8", "replace")[: BOARD_BYTES - 2]
        self._map[2 : 2 + len(data)] = data
        self._map[0:2] = len(data).to_bytes(2, "little")

    def read(self) -> str | None:
        size = int.from_bytes(self._map[0:2], "little")
        return self._map[2 : 2 + size].decode("utf-8", "replace") or None

    def close(self) -> None:
        self._map.close()
        self._file.close()


# --- the worker's side --------------------------------------------------------------------


@dataclass
class Job:
    """What one worker is started for: ``collect`` the files, or ``run`` the cases of one file."""

    kind: str
    files: list[str]
    board: str
    options: Options
    env: dict = field(default_factory=dict)
    gate: object | None = None
    worker_count: int = 1
    stdout_taken: bool = False
    cwd: str = "."
    sys_path: list = field(default_factory=list)
    argv: list = field(default_factory=list)


class _Sender:
    """One pipe to the supervisor, shared by the worker's loop and whatever threads the user's code prints from."""

    def __init__(self, conn) -> None:
        self.conn, self.lock = conn, threading.Lock()

    def __call__(self, *message) -> None:
        with self.lock:
            self.conn.send(message)


class _Forward:
    """``sys.stdout``/``sys.stderr`` of a worker: text goes to the supervisor, which writes it where it belongs."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, send: _Sender, stream: str) -> None:
        self.send, self.stream = send, stream

    def write(self, text) -> int:
        if text:
            try:
                self.send("out", self.stream, str(text))
            except (OSError, ValueError):  # the supervisor is gone: nothing left to show it to
                pass
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("a worker's output is forwarded, not a file")


def child(fd: int) -> None:
    """A worker's life, in the fork server's child: take the job, do it, and end with ``os._exit``
    whatever the user's code left running."""
    try:
        conn = Connection(fd)
        job = conn.recv()
    except BaseException:  # the supervisor is already gone
        os._exit(0)
    main(conn, job)
    os._exit(0)


def main(conn, job: Job) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    usercode.adopt_process()
    os.environ.clear()
    os.environ.update(job.env)
    os.chdir(job.cwd)
    sys.path[:] = job.sys_path
    sys.argv[:] = job.argv
    os.environ["RNNCHECK_WORKER_COUNT"] = str(job.worker_count)
    send = _Sender(conn)
    board = Board(Path(job.board))
    usercode.activity = board.write
    sys.stdout = _Forward(send, "stderr" if job.stdout_taken else "stdout")
    sys.stderr = _Forward(send, "stderr")
    try:
        if job.kind == "collect":
            _collect(send, job, board)
        else:
            _run(conn, send, job, board)
    except KeyboardInterrupt:  # raised by the user's code: the run stops, as in-process
        _try(send, "interrupt")
    except BaseException as exc:  # rnncheck's own worker loop failed: say so rather than die silently
        _try(send, "crash", f"{type(exc).__name__}: {safe_str(exc)}")
    os._exit(0)


def _try(send: _Sender, *message) -> None:
    try:
        send(*message)
    except (OSError, ValueError):
        pass


def _collect(send: _Sender, job: Job, board: Board) -> None:
    for index, name in enumerate(job.files):
        send("importing", index)
        board.write("importing the file")
        found, problem = load_file(Path(name), job.options.timeout)
        send("collected", index, [(c.name, c.line) for c in found], problem)


def _run(conn, send: _Sender, job: Job, board: Board) -> None:
    from .runner import verify_case

    board.write("importing the file")
    found, problem = load_file(Path(job.files[0]), job.options.timeout)
    if problem is not None:
        send("import_failed", problem.message)
        return
    cases = {c.name: c for c in found}
    send("ready", list(cases))
    gate = job.gate
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the supervisor is gone
            return
        if message[0] != "run":
            return
        name = message[1]
        board.write(None)
        threads = {t for t in threading.enumerate() if t.is_alive()}

        def stage(case, where, _send=send):
            if case is not None:
                _send("stage", case, where)

        if name not in cases:
            result = CaseResult(name, job.files[0], Verdict.ERROR, error=_vanished(name))
        elif gate is not None:
            gate.recorded, gate.refused, gate.written = {}, [], 0
            result = gate.run(cases[name], job.options, stage)
        else:
            result = verify_case(cases[name], job.options, progress=stage)
        left = [t for t in threading.enumerate() if t not in threads and t.is_alive() and not t.daemon]
        if left:
            _note_threads(result, left)
        delta = None if gate is None else (gate.recorded, gate.refused, gate.written)
        try:
            send("result", name, pickle.dumps((result, delta)))
        except Exception as exc:  # noqa: BLE001 - something in the result cannot cross a process boundary
            plain = CaseResult(name, result.file, Verdict.ERROR, error=f"its result could not be sent back: {exc}")
            send("result", name, pickle.dumps((plain, None)))


def _vanished(name: str) -> str:
    return (
        f"the case {name} was collected, but importing its file again in a fresh worker did not define it: "
        "make the file define the same cases every time it is imported"
    )


def _note_threads(result: CaseResult, left: list[threading.Thread]) -> None:
    names = ", ".join(t.name for t in left[:3])
    result.checks.append(
        IsolationResult(
            CheckName.ISOLATION,
            Verdict.PASS,
            [
                Finding(
                    "threads_left",
                    Verdict.NOTE,
                    f"the case left {len(left)} thread(s) running ({names}); they end with its worker process",
                )
            ],
        )
    )


# --- the supervisor's side ---------------------------------------------------------------


@dataclass
class _Worker:
    pid: int
    conn: object
    board: Board
    file: int | None = None  # index of the file it runs (None: the collector)
    ready: bool = False
    case: str | None = None  # what it runs now
    stage: str | None = None
    started: float = 0.0
    deadline: float | None = None
    index: int = 0  # the collector: the file it is importing
    finished: bool = False
    ended: bool = False


def describe_exit(code: int | None) -> str:
    """Why a worker died, in words: ``signal 11 (SIGSEGV)``, ``it exited with status 0``."""
    if code is None:
        return "it vanished"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        extra = ": the system's out-of-memory killer sends this" if name == "SIGKILL" else ""
        return f"signal {-code} ({name}{extra})"
    return f"it exited with status {code} (os._exit or a C library's exit)"


class Supervisor:
    """Runs collection and cases in workers, and reports each result as it arrives.

    ``on_stage(case, stage)`` follows the progress; ``on_output(stream, text)`` shows what user
    code printed; ``on_tick()`` is called a few times a second while waiting.
    """

    def __init__(
        self,
        options: Options,
        workers: int = 1,
        gate=None,
        stdout_taken: bool = False,
        on_stage: Callable[[str, str], None] | None = None,
        on_output: Callable[[str, str], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.options, self.slots, self.gate = options, max(1, workers), gate
        self.stdout_taken = stdout_taken
        self.on_stage = on_stage or (lambda case, stage: None)
        self.on_output = on_output or _write_output
        self.on_tick = on_tick or (lambda: None)
        self.folder = Path(tempfile.mkdtemp(prefix="rnncheck-workers-"))
        self.live: list[_Worker] = []
        self.made = 0

    # --- starting and stopping workers ---------------------------------------------------
    def _start(self, kind: str, files: list[str], file: int | None = None) -> _Worker:
        self.made += 1
        board = Board(self.folder / f"board-{self.made}", create=True)
        parent, child = Pipe()
        try:
            pid = zygote.server().fork(child.fileno())
        finally:
            child.close()
        job = Job(
            kind,
            files,
            str(board.path),
            self.options,
            env=dict(os.environ),
            gate=self.gate if kind == "run" else None,
            worker_count=self.slots,
            stdout_taken=self.stdout_taken,
            cwd=os.getcwd(),
            sys_path=list(sys.path),
            argv=list(sys.argv),
        )
        parent.send(job)
        worker = _Worker(pid, parent, board, file=file, started=time.monotonic())
        self.live.append(worker)
        return worker

    def _stop(self, worker: _Worker, kill: bool = False) -> int | None:
        """Make sure the worker has ended; how it ended (a negative code: the signal)."""
        code = 0  # a worker that was told to go, and went: how is of no interest
        if kill or not worker.finished:
            try:
                server = zygote.server()
                code = None if kill else server.exit_code(worker.pid, wait=2.0)
                if code is None:  # told to go, or its pipe closed while it lives on: it goes now
                    _kill(worker.pid)
                    code = server.exit_code(worker.pid, wait=5.0)
            except zygote.ServerError:  # the server is gone, and with it the news of how
                _kill(worker.pid)
                code = None
        worker.ended = True
        worker.conn.close()
        worker.board.close()
        if worker in self.live:
            self.live.remove(worker)
        return code

    def close(self) -> None:
        """Kill whatever still runs (an interrupt, -x) and remove the boards."""
        for worker in list(self.live):  # no waiting for how they ended: this may be an interrupt
            _kill(worker.pid)
            worker.ended = True
            worker.conn.close()
            worker.board.close()
        self.live.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _deadline(self, factor: int = 1) -> float | None:
        timeout = self.options.timeout
        if timeout is None:
            return None
        return time.monotonic() + factor * timeout + grace(timeout)

    # --- waiting ---------------------------------------------------------------------------
    def _messages(self, workers: list[_Worker]):
        """(worker, message) pairs as they arrive, ``(worker, None)`` for a worker whose pipe closed (it ended)."""
        waiting = {w.conn: w for w in workers}
        deadlines = [w.deadline for w in workers if w.deadline is not None]
        timeout = TICK if not deadlines else max(0.0, min(TICK, min(deadlines) - time.monotonic()))
        ready = wait(list(waiting), timeout=timeout)
        self.on_tick()
        for handle in ready:
            worker = waiting[handle]
            ended = False
            while True:  # everything it sent before it ended comes first
                try:
                    if not worker.conn.poll():
                        break
                    message = worker.conn.recv()
                except (EOFError, OSError):
                    ended = True
                    break
                if message[0] == "out":
                    self.on_output(message[1], message[2])
                elif message[0] == "stage":
                    worker.stage = message[2]
                    self.on_stage(message[1], message[2])
                else:
                    yield worker, message
            if ended:
                yield worker, None

    def _overdue(self, workers: list[_Worker]) -> list[_Worker]:
        now = time.monotonic()
        return [w for w in workers if w.deadline is not None and now > w.deadline and not w.ended]

    # --- collection ---------------------------------------------------------------------------
    def collect(self, files: list[Path]) -> list[tuple[list[CaseDef], FileProblem | None]]:
        """Each file's cases (without their functions, which stay in the worker) or the problem that stopped it."""
        names = [str(f) for f in files]
        found: dict[int, tuple[list[CaseDef], FileProblem | None]] = {}
        start = 0
        while start < len(files):
            worker = self._start("collect", names[start:])
            offset, worker.index = start, 0
            worker.deadline = self._deadline()
            while worker in self.live:
                for w, message in self._messages([worker]):
                    if message is None:
                        self._collector_ended(w, offset, names, found, killed=False)
                        break
                    if message[0] == "importing":
                        w.index, w.deadline = message[1], self._deadline()
                    elif message[0] == "collected":
                        index, cases, problem = message[1:]
                        file = names[offset + index]
                        found[offset + index] = ([CaseDef(n, None, file, line) for n, line in cases], problem)
                        w.index = index + 1
                    elif message[0] == "interrupt":
                        raise KeyboardInterrupt
                    elif message[0] == "crash":
                        found.setdefault(
                            offset + w.index, ([], FileProblem(names[offset + w.index], _crash(message[1]), True))
                        )
                for w in self._overdue([worker]):
                    self._stop(w, kill=True)
                    self._collector_ended(w, offset, names, found, killed=True)
            start = max(found, default=-1) + 1
        return [found[i] for i in range(len(files))]

    def _collector_ended(self, worker: _Worker, offset: int, names: list[str], found: dict, killed: bool) -> None:
        code = self._stop(worker, kill=killed)
        index = offset + worker.index
        if index >= len(names) or index in found:
            return
        if killed:
            message = (
                f"importing the file ran past --timeout {self.options.timeout:g} s and did not stop for the "
                "in-process timeout: rnncheck stopped its worker; make the import cheaper or raise --timeout"
            )
        else:
            message = f"the worker died while importing the file: {describe_exit(code)}"
        found[index] = ([], FileProblem(names[index], message, True))

    # --- running the cases -----------------------------------------------------------------
    def run(self, groups: list[tuple[str, list[str]]], on_result: Callable[[int, str, CaseResult], bool]) -> None:
        """Run each file's named cases; ``on_result(file index, name, result)`` returns False to stop the run."""
        queues = {i: deque(names) for i, (_, names) in enumerate(groups) if names}
        files = [file for file, _ in groups]
        try:
            while queues or self.live:
                try:
                    self._fill(queues, files)
                except zygote.ServerError as exc:  # no more workers to be had: what is left cannot run
                    for index in list(queues):
                        self._drain(index, queues, files, on_result, f"{exc}: the case could not be run")
                    if not self.live:
                        return
                stop = False
                workers = list(self.live)
                for worker, message in self._messages(workers):
                    if not self._handle(worker, message, queues, files, on_result):
                        stop = True
                for worker in self._overdue(list(self.live)):
                    what = worker.board.read() or (f"during {worker.stage}" if worker.stage else "")
                    self._stop(worker, kill=True)
                    if worker.case is not None:
                        result = self._error(files[worker.file], worker.case, _overdue_message(self.options, what))
                        stop = not on_result(worker.file, worker.case, result) or stop
                    else:
                        cause = f"importing the file in a fresh worker {_overdue_message(self.options, None)}"
                        stop = not self._drain(worker.file, queues, files, on_result, cause) or stop
                if stop:
                    return
        finally:
            self.close()

    def _fill(self, queues: dict, files: list[str]) -> None:
        """Start workers while there are free slots and files with cases no worker will reach soon."""
        while len(self.live) < self.slots:
            busy = {}
            for w in self.live:
                busy[w.file] = busy.get(w.file, 0) + 1
            fresh = [i for i in queues if queues[i] and i not in busy]
            helped = [i for i in queues if queues[i] and len(queues[i]) > busy.get(i, 0) and i in busy]
            if fresh:
                pick = fresh[0]
            elif helped:
                pick = max(helped, key=lambda i: len(queues[i]) - busy[i])
            else:
                return
            worker = self._start("run", [files[pick]], file=pick)
            worker.deadline = self._deadline()

    def _handle(self, worker: _Worker, message, queues: dict, files: list[str], on_result) -> bool:
        """Act on one message (None: the worker ended); False when ``on_result`` asks to stop."""
        if message is None:  # it ended: after its last case, or in the middle of one
            what = worker.board.read()
            code = self._stop(worker)
            if worker.case is not None:
                result = self._died(files[worker.file], worker, code, what, bool(queues.get(worker.file)))
                return on_result(worker.file, worker.case, result)
            if not worker.finished:  # before it could take a case
                cause = f"a fresh worker could not import the file: {describe_exit(code)}"
                return self._drain(worker.file, queues, files, on_result, cause)
            return True
        kind = message[0]
        if kind == "ready":
            worker.ready = True
            self._next(worker, queues)
            return True
        if kind == "import_failed":
            worker.finished = True
            cause = f"importing the file again in a fresh worker failed: {message[1]}"
            return self._drain(worker.file, queues, files, on_result, cause)
        if kind == "result":
            result, delta = pickle.loads(message[2])
            if delta is not None and self.gate is not None:
                self.gate.recorded.update(delta[0])
                self.gate.refused += delta[1]
                self.gate.written += delta[2]
            worker.case = None
            keep = on_result(worker.file, message[1], result)
            if keep:
                self._next(worker, queues)
            return keep
        if kind == "interrupt":
            raise KeyboardInterrupt
        if kind == "crash" and worker.case is not None:
            name, worker.case = worker.case, None
            return on_result(
                worker.file, name, self._error(files[worker.file], name, _crash(message[1]), kind=Kind.WORKER_CRASHED)
            )
        return True

    def _next(self, worker: _Worker, queues: dict) -> None:
        """Hand the worker its file's next case, or let it go."""
        queue = queues.get(worker.file)
        if queue:
            worker.case, worker.stage = queue.popleft(), None
            factor = self.gate.repeats if self.gate is not None and self.gate.update else 1
            worker.deadline = self._deadline(factor)
            message = ("run", worker.case)
        else:
            worker.finished, worker.deadline = True, None
            message = ("quit",)
        if queue is not None and not queue:
            del queues[worker.file]
        try:
            worker.conn.send(message)
        except OSError:  # it died meanwhile: its sentinel says so next
            pass

    def _died(self, file: str, worker: _Worker, code: int | None, what: str | None, more: bool) -> CaseResult:
        where = f"while running {what}" if what else (f"during {worker.stage}" if worker.stage else "")
        message = f"the worker died: {describe_exit(code)} {where} of {worker.case}".replace("  ", " ")
        if more:
            message += "; the file's other cases ran in a fresh worker"
        return self._error(file, worker.case, message, kind=Kind.WORKER_DIED)

    def _drain(self, index: int, queues: dict, files: list[str], on_result, message: str) -> bool:
        """The file's cases that no worker will run, each an error with ``message``; False: stop the run."""
        keep = True
        for name in queues.pop(index, []):
            keep = on_result(index, name, self._error(files[index], name, message)) and keep
        return keep

    def _error(self, file: str, name: str, message: str, kind: Kind = Kind.WORKER_STOPPED) -> CaseResult:
        checks = [IsolationResult(CheckName.ISOLATION, Verdict.ERROR, [Finding(kind, Verdict.ERROR, message)])]
        if self.gate is not None:
            reason = "the case cannot be compared with a baseline: " + message
            checks.append(
                BaselineResult(CheckName.BASELINE, Verdict.ERROR, [Finding("baseline_error", Verdict.ERROR, reason)])
            )
        return CaseResult(name, file, Verdict.ERROR, checks, error=message)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _overdue_message(options: Options, what: str | None) -> str:
    where = f" {what}" if what and what.startswith("during") else (f" in {what}" if what else "")
    return (
        f"ran past --timeout {options.timeout:g} s{where} and did not stop for the in-process timeout (the code "
        "catches or blocks SIGALRM, or runs a long C call): rnncheck stopped its worker; make the case smaller "
        "or raise --timeout"
    )


def _crash(text: str) -> str:
    return f"rnncheck's worker stopped on an internal error: {text} (rerun with --in-process --debug, and please report it)"


def _write_output(stream: str, text: str) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.write(text)
    target.flush()
