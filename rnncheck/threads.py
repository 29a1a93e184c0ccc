"""The thread policy: how many intra-op threads torch may use while a case is checked.

rnncheck runs many small torch operations.  With torch's default of one thread per core,
every one of them ends in an OpenMP barrier that waits for all the threads; on a machine
where another process is busy (a shared CI runner, pytest-xdist's other workers) one of
those threads is always descheduled, and a check of a small model becomes 5-30× slower.
One thread has no barrier to wait at.  So:

1. an explicit choice is kept: ``--threads N`` (``Options.threads``), an ``OMP_NUM_THREADS``
   or ``MKL_NUM_THREADS`` in the environment, or a ``torch.set_num_threads`` the user's code
   made since rnncheck was imported;
2. otherwise a small model runs on one thread: one whose forward+backward, timed on one
   thread (the fastest of two calls, three near the bound, one far above it), takes under :data:`SMALL_CALL` seconds, or four times
   that for a model of fewer than :data:`FEW_PARAMETERS` parameters.  The work decides, not
   the parameter count alone: an LSTM(64) at batch 64 paid for two threads, 10.3 → 7.4
   forward+backwards for the whole check;
3. a larger one gets more threads only where a measured forward+backward shows that they
   pay (at least :data:`PAYS` times faster than one thread), measured once per model
   signature and input shapes in a process.  A gradient call that fails while it is timed
   leaves the case on one thread, for the checks to meet the failure and say what it is;
4. the thread budget is the cores this process may use, divided among pytest-xdist's
   workers when it runs under them;
5. NumPy's BLAS (OpenBLAS or MKL: the reference, NumPy cases' own code) is held while the case
   runs (:func:`blas_threads`, through threadpoolctl; :func:`blas_count` says to what): its
   threads spin at barriers as OpenMP's do, and the reference's backward ran 2.6× slower beside
   one busy process with them.  A NumPy case's model is NumPy code, and its BLAS gets the case's
   count; beside a torch model BLAS gets one thread, since what NumPy computes there is
   rnncheck's own small work (the reference's per-step products of two sequences) and a second
   pool spinning after each of those products takes the cores torch's threads wait for
   (``nn.LSTM(256)`` in float64 at B=64 on two cores: the whole check 9.1 → 7.0 forward+backwards);
6. whatever was set before the case is put back after it (:func:`rnncheck.usercode.case_guard`
   for torch, :func:`blas_threads` for BLAS).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import ThreadpoolController

from .errors import BudgetExceeded
from .nested import leaves

#: a forward+backward faster than this on one thread (seconds) runs on one thread without measuring more
SMALL_CALL = 0.002
#: a model with fewer parameters than this needs a call this many times ``SMALL_CALL`` to be measured: a tiny
#: model's call, slowed by a busy neighbour, once measured 10× faster on two threads than on one
FEW_PARAMETERS, FEW_PARAMETERS_CALLS = 50_000, 4
#: more threads are kept only if one forward+backward runs at least this many times faster
PAYS = 1.3
#: a first call on one thread of at least this many times the small-model bound is timed once, not twice
LARGE_CALL = 10

_AT_IMPORT = torch.get_num_threads()

#: decisions already measured in this process, by model signature: a run of many cases of one
#: architecture (a gate writing its baseline from repeated runs, say) measures it once
_MEASURED: dict[tuple, tuple[int, str]] = {}


def available_cores() -> int:
    """The cores this process may run on, shared out among pytest-xdist's workers."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and workers.isdigit() and int(workers) > 0:
        cores = max(1, cores // int(workers))
    return max(1, cores)


def explicit_threads(requested: int | None) -> tuple[int | None, str | None]:
    """The thread count someone chose, and who: None when nobody did."""
    if requested:
        return requested, "--threads"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value), var
    if torch.get_num_threads() != _AT_IMPORT:
        return torch.get_num_threads(), "torch.set_num_threads"
    return None, None


def _time_gradient(target, threads: int, repeats: int = 2) -> float:
    """The fastest of ``repeats`` gradient calls on ``threads`` threads, in seconds.  Each call is kept in
    ``target.prepaid`` as ``(threads, seconds, result)`` until :func:`apply_policy` has chosen."""
    torch.set_num_threads(threads)
    best, made = float("inf"), 0
    try:
        for _ in range(repeats):
            made += 1
            start = time.perf_counter()
            result = target.gradient()
            seconds = time.perf_counter() - start
            target.prepaid.append((threads, seconds, result))
            best = min(best, seconds)
    finally:
        target.evaluations -= made  # the policy's own calls are not the check's evaluations
    return best


def _measure(target, budget: int) -> tuple[int, str]:
    """The thread count for ``target`` and the sentence that says why, from timed gradient calls."""
    # the fastest of two, and of three near the bound: the first call of a process is a cold one (lazy
    # initialization, the allocator), and one call slowed by a neighbour must not make a small model look large.
    # A first call of LARGE_CALL times the bound or more is not a small model's, cold or not: its second call is
    # the one after the timed calls on more threads, which every measured model gets
    few = sum(v.size for v in target.theta.values()) < FEW_PARAMETERS
    bound = SMALL_CALL * (FEW_PARAMETERS_CALLS if few else 1)
    one = _time_gradient(target, 1, repeats=1)
    if one < LARGE_CALL * bound:
        one = min(one, _time_gradient(target, 1, repeats=1))
    if bound <= one < 2 * bound:
        one = min(one, _time_gradient(target, 1, repeats=1))
    if one < bound:
        return 1, (
            f"1 thread (a small model: one forward+backward takes {one * 1e3:.2g} ms on one thread, and one thread "
            "waits at no barrier when the machine is busy)"
        )
    many = _time_gradient(target, budget)
    one = min(one, _time_gradient(target, 1, repeats=1))  # once more after: a machine that was slow at first
    if many > one:
        # more threads measured slower than one: a busy machine, or a neighbour's burst during those two calls (a
        # float32 LSTM(256) at batch 8, 1.8× faster on two threads in most runs, once read 0.7×); once more each
        many = min(many, _time_gradient(target, budget, repeats=1))
        one = min(one, _time_gradient(target, 1, repeats=1))
    if one > PAYS * many:
        return budget, f"{budget} threads (one forward+backward measured {one / many:.1f}× faster than on one thread)"
    return 1, f"1 thread ({budget} threads measured only {one / many:.1f}× faster on one forward+backward)"


def apply_policy(target, requested: int | None) -> str:
    """Set torch's thread count for checking ``target``; return the sentence the report shows."""
    chosen, who = explicit_threads(requested)
    if chosen is not None:
        torch.set_num_threads(chosen)
        return f"{chosen} thread(s), as {who} says"
    if target.device is not None and target.device.type != "cpu":
        return f"{torch.get_num_threads()} thread(s) for the host side; the model runs on {target.device}"
    budget = available_cores()
    if budget == 1 or target.model is None:
        torch.set_num_threads(1)
        return "1 thread (a small model: one thread waits at no barrier when the machine is busy)"
    key = (
        type(getattr(getattr(target, "case", None), "model", None)).__name__,
        tuple(sorted((n, v.shape) for n, v in target.theta.items())),
        # the inputs' shapes: one model at batch 1 and at batch 64 is two decisions (2 threads paid 1.0× and 1.7×
        # for an LSTM(256) in float64)
        tuple((path, tuple(t.shape)) for path, t in leaves(target.inputs, "input")),
        str(target.model_dtype),
        budget,
    )
    if key not in _MEASURED:
        try:
            _MEASURED[key] = _measure(target, budget)
        except BudgetExceeded:
            raise
        except Exception:  # noqa: BLE001 - the user's gradient failed: the checks meet it, and name it
            target.prepaid.clear()
            torch.set_num_threads(1)
            return "1 thread (not measured: the gradient call failed)"
    threads, said = _MEASURED[key]
    torch.set_num_threads(threads)
    _keep_prepaid(target, threads)
    return said


def _keep_prepaid(target, threads: int) -> None:
    """Keep the last two of the policy's timed calls made on ``threads``, for the sanity checks to take as theirs.

    They are gradient calls at the check point, on the thread count the case now runs on, as the sanity
    checks' own two would be: taking them saves two forward+backwards a case, which every
    measured case paid on top of the check (a small model's two timed calls are then all the
    policy costs).  Their seconds serve as the sanity checks' timings, of which the fastest is the unit.
    """
    same = [call for call in target.prepaid if call[0] == threads]
    target.prepaid[:] = same[-2:] if len(same) >= 2 else []


def blas_count(target) -> int:
    """How many threads NumPy's BLAS gets for checking ``target``: torch's count where the model is NumPy code,
    one beside a torch model (see the module's docstring, point 5)."""
    if target.model is None:
        return torch.get_num_threads()
    return 1


_CONTROLLER = None  # threadpoolctl's view of the loaded BLAS libraries, made on first use


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Hold NumPy's BLAS to ``n`` threads inside the block; put back what it was after."""
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
        limiter = _CONTROLLER.limit(limits=n, user_api="blas")
    except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it cannot drive: the case runs as it is
        yield
        return
    try:
        yield
    finally:
        limiter.restore_original_limits()
