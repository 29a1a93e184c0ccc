"""User code behind one door.

Every call rnncheck makes into the user's code (importing a model file, building a
case, its loss, its gradient, a module's forward) goes through :func:`call_user`, and
every case runs inside :func:`case_guard`.  Together they contain what user code may do:

- **raise**: the exception becomes a :class:`~rnncheck.errors.UserCodeError` naming the
  call and the user's own frame;
- **exit** (``sys.exit``): the same, "called sys.exit(0)", never the end of the run;
- **hang**: past ``--timeout`` a :class:`CaseTimeout` is raised inside the running code
  (SIGALRM on the main thread, as pytest-timeout's signal method does), so a pure-Python
  ``while True`` is stopped too; it derives from ``BaseException`` so that a user's
  ``except Exception`` cannot swallow it;
- **change global state**: the working directory, torch's default dtype, the global RNG
  states of torch, numpy and random, grad mode, anomaly mode and torch's thread count
  are saved before the case and put back after it; what changed is reported;
- **interrupt** (Ctrl-C, or ``KeyboardInterrupt`` raised by user code): passes through,
  so that the front end can stop the run and still write what finished.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import CaseError, UserCodeError, user_frame


class CaseTimeout(BaseException):
    """A case ran past its hard ``--timeout``.  ``where`` is filled by the innermost user call."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"ran past --timeout {seconds:g} s")
        self.seconds = seconds
        self.where: str | None = None

    def message(self, stage: str | None = None) -> str:
        where = self.where or (f"during {stage}" if stage else "")
        return f"ran past --timeout {self.seconds:g} s {where}".rstrip() + ": make the case smaller or raise --timeout"


def exit_message(what: str, exc: SystemExit, user_file: str | None = None) -> str:
    code = exc.code if exc.code is not None else 0
    return (
        f"{what} called sys.exit({code!r}){user_frame(exc, user_file)}: "
        "a case must return or raise; move script code under `if __name__ == '__main__':`"
    )


#: told which call into user code is running (``what``), and None when rnncheck's own code runs again: a
#: worker process keeps it where its supervisor can read it after the worker died (see :mod:`rnncheck.workers`)
activity: Callable[[str | None], None] | None = None
_current: str | None = None
#: seconds spent inside calls into user code, the outermost of nested calls only (see :func:`user_seconds`)
_inside = {"depth": 0, "seconds": 0.0}


def user_seconds() -> float:
    """Seconds this process has spent inside :func:`call_user` so far: the difference over a check is the time its
    calls into the user's code took (the model's forward, the loss, the backward pass), the rest is rnncheck's own."""
    return _inside["seconds"]


def call_user(what: str, fn, *args, user_file: str | None = None, **kwargs):
    """Call the user's ``fn``; an exception or ``sys.exit`` becomes a :class:`UserCodeError` naming ``what``."""
    global _current
    outer, tell = _current, activity
    if tell is not None:
        _current = what
        tell(what)
    inside = _inside
    inside["depth"] += 1
    start = time.perf_counter()
    try:
        try:
            return fn(*args, **kwargs)
        finally:
            inside["depth"] -= 1
            if inside["depth"] == 0:
                inside["seconds"] += time.perf_counter() - start
            exit_if_forked()
            if tell is not None:
                _current = outer
                tell(outer)
    except CaseError:
        raise
    except CaseTimeout as exc:
        if exc.where is None:
            exc.where = f"in {what}{user_frame(exc, user_file)}"
        raise
    except SystemExit as exc:
        raise UserCodeError(what, exc, user_file, message=exit_message(what, exc, user_file)) from exc
    except Exception as exc:  # the user's code may raise anything
        raise UserCodeError(what, exc, user_file) from exc


# --- the hard timeout ---------------------------------------------------------------------


def hard_timeout_available() -> bool:
    """SIGALRM exists here and this is the main thread (signals are delivered only there)."""
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


class _Alarm:
    """Raise :class:`CaseTimeout` in the running code after ``seconds``; restore any outer alarm after."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.armed = False
        self.active = bool(seconds) and hard_timeout_available()

    def _fire(self, signum, frame) -> None:
        if self.armed:
            self.armed = False
            raise CaseTimeout(self.seconds)

    def __enter__(self) -> _Alarm:
        if self.active:
            self.started = time.monotonic()
            self.old_handler = signal.signal(signal.SIGALRM, self._fire)
            self.old_timer = signal.setitimer(signal.ITIMER_REAL, 0)
            self.armed = True
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc) -> None:
        if not self.active:
            return
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old_handler)
        remaining, interval = self.old_timer
        if remaining > 0:  # an outer alarm (pytest-timeout, say) keeps what is left of its time
            left = max(remaining - (time.monotonic() - self.started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


# --- global state ------------------------------------------------------------------------


@dataclass
class GlobalState:
    """What a case could change for every later case, saved so that it can be put back."""

    cwd: str | None
    default_dtype: torch.dtype
    torch_rng: torch.Tensor
    cuda_rng: list | None
    numpy_rng: tuple
    python_rng: tuple
    grad_enabled: bool
    anomaly: tuple[bool, bool]
    threads: int
    modules: dict = field(default_factory=dict)  # rnncheck's own modules, as sys.modules held them
    attributes: dict = field(default_factory=dict)  # module name -> a copy of its namespace, of torch & co.
    changed: list[str] = field(default_factory=list)

    @classmethod
    def save(cls) -> GlobalState:
        try:
            cwd = os.getcwd()
        except OSError:  # the directory we are in was removed
            cwd = None
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(
            cwd=cwd,
            default_dtype=torch.get_default_dtype(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=cuda,
            numpy_rng=np.random.get_state(),
            python_rng=random.getstate(),
            grad_enabled=torch.is_grad_enabled(),
            anomaly=(torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()),
            threads=torch.get_num_threads(),
            modules={k: v for k, v in sys.modules.items() if k == "rnncheck" or k.startswith("rnncheck.")},
            attributes=_library_attributes(),
        )

    def restore(self, threads: bool = True) -> list[str]:
        """Put everything back; return what the case had changed (RNG draws are not reported).

        ``threads=False`` keeps torch's thread count as the code left it: a model file that
        calls ``torch.set_num_threads`` at import time means it for its cases.
        """
        changed = []
        try:
            now = os.getcwd()
        except OSError:
            now = None
        if self.cwd is not None and now != self.cwd:
            changed.append(f"the working directory (to {now})")
            os.chdir(self.cwd)
        if torch.get_default_dtype() != self.default_dtype:
            changed.append(f"torch's default dtype (to {torch.get_default_dtype()})")
            torch.set_default_dtype(self.default_dtype)
        if torch.is_grad_enabled() != self.grad_enabled:
            changed.append(f"torch grad mode (set_grad_enabled({torch.is_grad_enabled()}))")
            torch.set_grad_enabled(self.grad_enabled)
        anomaly = (torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled())
        if anomaly != self.anomaly:
            changed.append(f"torch's anomaly mode (to {anomaly[0]})")
            torch.autograd.set_detect_anomaly(*self.anomaly)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)
        random.setstate(self.python_rng)
        if threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        gone = [k for k, v in self.modules.items() if sys.modules.get(k) is not v]
        if gone:  # a file that deleted or replaced rnncheck's modules cannot take the next file's cases with it
            changed.append(f"sys.modules' rnncheck entries ({', '.join(sorted(gone)[:3])})")
            sys.modules.update(self.modules)
        moved = [(m, a) for m, saved in self.attributes.items() for a in _moved(saved, sys.modules.get(m))]
        for m, a in moved:  # torch.tanh = torch.relu left behind must not reach another case
            setattr(sys.modules[m], a, self.attributes[m][a])
        if moved:
            changed.append(", ".join(f"{m}.{a}" for m, a in moved[:4]) + (" …" if len(moved) > 4 else ""))
        return changed


#: library modules whose attributes a case must not leave changed for the next one
GUARDED_MODULES = ("rnncheck", "torch", "torch.nn.functional", "torch.nn", "torch.linalg", "numpy", "math")


def _library_attributes() -> dict:
    """A copy of each guarded module's namespace (one C-level copy each: thousands of names in ~0.1 ms)."""
    return {name: dict(vars(sys.modules[name])) for name in GUARDED_MODULES if name in sys.modules}


def _moved(saved: dict, module) -> list[str]:
    """The names (dunders aside) whose object in ``module`` is no longer the one ``saved`` holds.

    Unchanged is the common case, and one dict comparison says so at C speed (it compares
    identical objects by identity); only a namespace that differs in any way, a new name
    included, is walked name by name.
    """
    if module is None:
        return []
    now = vars(module)
    try:
        if saved == now:
            return []
    except Exception:  # noqa: BLE001 - a replaced object whose == raises (an array): walk the names
        pass
    return [a for a, obj in saved.items() if not a.startswith("__") and now.get(a, obj) is not obj]


#: the process rnncheck runs in: a fork the user's code makes must not go on to run rnncheck's own code
_PID = os.getpid()


def adopt_process() -> None:
    """This process is rnncheck's own (a worker started by its supervisor), not a fork of the user's code."""
    global _PID
    _PID = os.getpid()


def exit_if_forked() -> None:
    """In a child the user's code forked: end it here, silently, so that no case or summary prints twice."""
    if os.getpid() != _PID:
        os._exit(0)


@contextmanager
def case_guard(timeout: float | None = None, keep_threads: bool = False) -> Iterator[GlobalState]:
    """Run a case: hard timeout armed, global state saved and put back (``state.changed`` says what moved)."""
    state = GlobalState.save()
    try:
        with _Alarm(timeout):
            yield state
    finally:
        exit_if_forked()
        state.changed = state.restore(threads=not keep_threads)
