"""The thread policy: one thread for small models, an explicit choice kept, the user's setting put back."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner

from rnncheck import main

SMALL = """
import torch
import rnncheck
{pre}

@rnncheck.case
def small_lstm():
    torch.manual_seed(0)
    return rnncheck.TorchCase(torch.nn.LSTM(3, 8).double(), inputs=(torch.randn(6, 2, 3, dtype=torch.float64),))
"""


def threads_said(tmp_path, *args, pre="", env=None):
    f = tmp_path / "m.py"
    f.write_text(textwrap.dedent(SMALL.format(pre=pre)))
    env = {**{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}, **(env or {})}
    env.pop("PYTEST_XDIST_WORKER_COUNT", None)
    out = subprocess.run(
        [sys.executable, "-m", "rnncheck", "verify", str(f), "--json", "-", "--no-flow", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    ).stdout
    case = json.loads(out)["cases"][0]
    return next(c for c in case["checks"] if c["name"] == "gradient")["numbers"]["threads"]


def test_a_small_model_runs_on_one_thread(tmp_path):
    # said as a small model where its call was timed under the bound, as measured where a busy machine slowed it
    said = threads_said(tmp_path)
    assert said.startswith("1 thread (a small model") or re.match(r"1 thread \(\d+ threads measured only", said), said


def test_an_explicit_choice_is_kept(tmp_path):
    assert threads_said(tmp_path, "--threads", "2") == "2 thread(s), as --threads says"
    assert threads_said(tmp_path, env={"OMP_NUM_THREADS": "2"}) == "2 thread(s), as OMP_NUM_THREADS says"
    said = threads_said(tmp_path, pre=f"torch.set_num_threads({torch.get_num_threads() + 1})")
    assert said == f"{torch.get_num_threads() + 1} thread(s), as torch.set_num_threads says"


def test_the_callers_thread_count_is_put_back(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        f = tmp_path / "m.py"
        f.write_text(textwrap.dedent(SMALL.format(pre="")))
        result = CliRunner().invoke(main, ["verify", str(f), "--no-flow"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_pytest_xdist_workers_share_the_cores(monkeypatch):
    import rnncheck.threads as policy  # the policy's own arithmetic, not a user-facing behaviour

    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "64")
    assert policy.available_cores() == 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert policy.available_cores() >= 1


def test_numpys_blas_runs_on_the_cases_threads_and_is_put_back(monkeypatch):
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    import rnncheck

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    seen = []

    def loss(p):
        seen.append(blas())
        return float(p["w"] @ p["w"])

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas()
        case = rnncheck.NumpyCase({"w": np.ones(3)}, loss=loss, grad=lambda p: {"w": 2 * p["w"]})
        result = rnncheck.verify_case(case, rnncheck.Options(diagnostics=False))
        assert result.verdict == "pass"
        assert seen and all(counts == [1] * len(counts) for counts in seen[1:])  # a small model: one thread
        assert blas() == before  # and what was set before is back


def test_blas_gets_a_numpy_models_threads_and_one_thread_beside_a_torch_model(monkeypatch):
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    import rnncheck

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    seen = {}

    def numpy_loss(p):
        seen.setdefault("numpy", []).append(blas())
        return float(p["w"] @ p["w"])

    def torch_loss(out):
        seen.setdefault("torch", []).append(blas())
        return out.pow(2).sum()

    before_threads = torch.get_num_threads()
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            if not blas():
                pytest.skip("no BLAS that threadpoolctl can see: nothing is held")
            numpy_case = rnncheck.NumpyCase({"w": np.ones(3)}, loss=numpy_loss, grad=lambda p: {"w": 2 * p["w"]})
            torch.manual_seed(0)
            torch_case = rnncheck.TorchCase(
                torch.nn.Linear(3, 2).double(), inputs=(torch.randn(4, 3, dtype=torch.float64),), loss=torch_loss
            )
            for case in (numpy_case, torch_case):
                result = rnncheck.verify_case(case, rnncheck.Options(diagnostics=False, reference=False, threads=2))
                assert result.verdict == "pass", result.error
    finally:
        torch.set_num_threads(before_threads)
    # a NumPy model's own products get the two threads asked for; beside a torch model, NumPy's work is
    # rnncheck's own and one thread spins at no barrier beside torch's pool
    assert all(counts == [2] * len(counts) for counts in seen["numpy"][1:])
    assert all(counts == [1] * len(counts) for counts in seen["torch"])


def test_blas_threads_come_back_after_a_case_that_exits_hangs_or_sets_its_own(monkeypatch):
    import sys

    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    import rnncheck

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    def exits(p):
        sys.exit(0)

    def hangs(p):
        while True:
            pass

    def sets_its_own(p):
        threadpool_limits(limits=1, user_api="blas")  # left in place, as careless code would
        return float(p["w"] @ p["w"])

    with threadpool_limits(limits=2, user_api="blas"):
        before = blas()
        assert before and all(n == 2 for n in before)  # not the one thread a small case runs on
        for loss, verdict in ((exits, "error"), (hangs, "error"), (sets_its_own, "pass")):
            case = rnncheck.NumpyCase({"w": np.ones(3)}, loss=loss, grad=lambda p: {"w": 2 * p["w"]})
            result = rnncheck.verify_case(case, rnncheck.Options(diagnostics=False, timeout=1.0))
            assert result.verdict == verdict, (loss.__name__, result.error)
            assert blas() == before, loss.__name__


@pytest.fixture
def two_cores(monkeypatch):
    """The policy as it runs on a two-core machine of its own: no thread count in the environment, two cores,
    nothing measured yet."""
    import rnncheck.threads as policy

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(policy, "available_cores", lambda: 2)
    monkeypatch.setattr(policy, "_MEASURED", {})
    return policy


def test_one_model_at_two_batch_sizes_is_measured_twice(monkeypatch, two_cores):
    import rnncheck
    import rnncheck.threads as policy  # the policy's own bookkeeping, not a user-facing behaviour

    timed = []

    def fake_time(target, threads, repeats=2):
        batch = target.inputs[0].shape[1]
        timed.append((batch, threads))
        # two threads pay at batch 64 only, as they did for an LSTM(256) in float64
        return 1.0 if threads == 1 or batch == 1 else 0.5

    monkeypatch.setattr(policy, "_time_gradient", fake_time)
    torch.manual_seed(0)
    model = torch.nn.LSTM(128, 128)
    said = {}
    before = torch.get_num_threads()
    try:
        for batch in (1, 64):
            torch.set_num_threads(policy._AT_IMPORT)  # nobody's explicit choice, as the case's guard leaves it
            case = rnncheck.TorchCase(model, inputs=(torch.randn(3, batch, 128),))
            said[batch] = policy.apply_policy(case.bind(rnncheck.Options()), None)
    finally:
        torch.set_num_threads(before)
    assert {b for b, _ in timed} == {1, 64}
    assert said[1].startswith("1 thread") and said[64].startswith("2 threads"), said


def test_a_fast_call_stays_on_one_thread_and_a_slow_one_is_measured_few_parameters_or_many(monkeypatch, two_cores):
    import rnncheck
    import rnncheck.threads as policy  # the policy's own arithmetic, not a user-facing behaviour

    few = torch.nn.Linear(3, 2)  # 8 parameters
    many = torch.nn.Linear(256, 256)  # 65,792 parameters
    assert sum(p.numel() for p in many.parameters()) >= policy.FEW_PARAMETERS
    bound = policy.SMALL_CALL
    runs = {  # (model, seconds on one thread) -> measured further?
        ("few", bound / 2): False,
        ("few", bound * 2): False,  # few parameters: a call must be clearly slow to be worth measuring
        ("few", bound * policy.FEW_PARAMETERS_CALLS * 2): True,  # an LSTM(64) at batch 64, say
        ("many", bound / 2): False,
        ("many", bound * 2): True,
        ("many", bound * policy.LARGE_CALL * 2): True,  # clearly large: its first call is not repeated at once
    }
    before = torch.get_num_threads()
    said = {}
    try:
        for (which, seconds), _ in runs.items():
            monkeypatch.setattr(policy, "_MEASURED", {})
            timed = []

            def fake_time(target, threads, repeats=2, seconds=seconds):
                timed.append(threads)
                return seconds if threads == 1 else seconds / 2  # two threads would pay twice over

            monkeypatch.setattr(policy, "_time_gradient", fake_time)
            torch.set_num_threads(policy._AT_IMPORT)
            model = few if which == "few" else many
            case = rnncheck.TorchCase(model, inputs=(torch.randn(4, model.in_features),))
            said[(which, seconds)] = (policy.apply_policy(case.bind(rnncheck.Options()), None), timed)
    finally:
        torch.set_num_threads(before)
    for key, measured in runs.items():
        sentence, timed = said[key]
        large = key[1] >= policy.LARGE_CALL * bound
        if measured:
            assert sentence.startswith("2 threads (one forward+backward measured 2.0×"), key
            assert timed == ([1, 2, 1] if large else [1, 1, 2, 1]), (key, timed)
        else:
            assert sentence.startswith("1 thread (a small model") and timed == [1, 1], key  # nothing more timed


def test_a_gradient_that_fails_while_the_policy_times_it_is_reported_by_the_checks(monkeypatch, two_cores):
    import rnncheck
    import rnncheck.threads as policy

    def broken(out):
        raise ValueError("the loss is broken")

    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(policy._AT_IMPORT)
    try:
        # 132k parameters: a model large enough that every version of the policy times its gradient
        case = rnncheck.TorchCase(torch.nn.LSTM(128, 128), inputs=(torch.randn(5, 2, 128),), loss=broken)
        result = rnncheck.verify_case(case, rnncheck.Options())
    finally:
        torch.set_num_threads(before)
    assert result.verdict == "error"
    assert result.error.startswith("loss() raised ValueError: the loss is broken")
    assert [str(c.name) for c in result.checks] == ["sanity"]  # the sanity check met it, as without the policy
    assert policy._MEASURED == {}  # nothing decided from a failed call


def test_the_policys_timed_calls_are_the_sanity_checks_two_and_count_as_theirs(monkeypatch, two_cores):
    """A measured case used to pay the policy's timed gradient calls on top of the check: the last two made on the
    thread count it chose are now the sanity checks' own, so a case makes two calls fewer, and reports the same (a
    small model's policy now costs nothing: its two timed calls are the sanity checks')."""
    import rnncheck
    import rnncheck.threads as policy  # the policy's own bookkeeping, not a user-facing behaviour

    class Counted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 6)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.lstm(x)[0]

    def run(options):
        torch.manual_seed(0)
        model = Counted().double()
        case = rnncheck.TorchCase(model, inputs=(torch.randn(5, 2, 4, dtype=torch.float64),))
        before = torch.get_num_threads()
        torch.set_num_threads(policy._AT_IMPORT)
        try:
            result = rnncheck.verify_case(case, options)
        finally:
            torch.set_num_threads(before)
        return result, model.calls

    monkeypatch.setattr(policy, "_MEASURED", {})
    measured, measured_calls = run(rnncheck.Options())  # a small model: two timed calls on one thread
    assert measured.checks[1].threads.startswith("1 thread (a small model")
    monkeypatch.setattr(policy, "_MEASURED", {})
    chosen, chosen_calls = run(rnncheck.Options(threads=1))  # nothing timed: the sanity checks call twice
    assert measured.verdict == chosen.verdict == "pass"
    assert measured_calls == chosen_calls  # two timed calls, and they are the sanity checks'
    sanity = {r.checks[0].name: r.checks[0].evaluations for r in (measured, chosen)}
    assert measured.checks[0].evaluations == chosen.checks[0].evaluations == 2, sanity
    gradient = [next(c for c in r.checks if c.name == "gradient") for r in (measured, chosen)]
    assert gradient[0].evaluations == gradient[1].evaluations
    assert [(t.name, t.norm) for t in gradient[0].tensors] == [(t.name, t.norm) for t in gradient[1].tensors]


def test_a_backward_that_keeps_state_is_still_caught_in_the_policys_calls(monkeypatch, two_cores):
    import importlib.util

    from helpers import MODELS

    import rnncheck
    import rnncheck.threads as policy

    # a backward that adds to a running sum it never resets (tests/models/random_or_stateful.py)
    spec = importlib.util.spec_from_file_location("random_or_stateful", MODELS / "random_or_stateful.py")
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)
    case = models.stateful
    before = torch.get_num_threads()
    torch.set_num_threads(policy._AT_IMPORT)
    try:
        result = rnncheck.verify_case(case, rnncheck.Options())
    finally:
        torch.set_num_threads(before)
    finding = next(f for f in result.findings if f.kind == "stateful_gradient")
    # the policy timed two calls on one thread, and the sanity checks compared them: the second is twice the first
    assert finding.numbers["ratio"] == pytest.approx(2.0)
    assert result.verdict == "fail"


def test_more_threads_measured_slower_are_measured_once_more(monkeypatch, two_cores):
    """A neighbour's burst during the two-thread calls must not leave a model that gains from threads on one; a
    machine that stays busy still gets one thread."""
    import rnncheck
    import rnncheck.threads as policy  # the policy's own arithmetic, not a user-facing behaviour

    said = {}
    before = torch.get_num_threads()
    try:
        for burst in ("passing", "lasting"):
            monkeypatch.setattr(policy, "_MEASURED", {})
            timed = []

            def fake_time(target, threads, repeats=2, burst=burst):
                timed.append(threads)
                if threads == 1:
                    return 0.010
                slow = burst == "lasting" or timed.count(threads) == 1  # the first two-thread timing is slowed
                return 0.014 if slow else 0.005

            monkeypatch.setattr(policy, "_time_gradient", fake_time)
            torch.set_num_threads(policy._AT_IMPORT)
            model = torch.nn.Linear(256, 256).double()
            case = rnncheck.TorchCase(model, inputs=(torch.randn(4, 256, dtype=torch.float64),))
            said[burst] = (policy.apply_policy(case.bind(rnncheck.Options()), None), list(timed))
    finally:
        torch.set_num_threads(before)
    assert said["passing"][0].startswith("2 threads (one forward+backward measured 2.0×"), said
    assert said["lasting"][0].startswith("1 thread (2 threads measured only 0.7×"), said
    assert said["passing"][1] == said["lasting"][1] == [1, 1, 2, 1, 2, 1]
