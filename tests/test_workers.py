"""The supervisor's own parts: how a worker's end is told, the board a dead worker leaves, and the fallback
when no fork server can be started (the command goes on in-process and says so)."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from rnncheck import main, workers, zygote


def test_a_workers_end_is_told_in_words():
    assert workers.describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert "out-of-memory killer" in workers.describe_exit(-9)
    assert workers.describe_exit(0).startswith("it exited with status 0")
    assert workers.describe_exit(None) == "it vanished"


def test_the_board_keeps_the_last_call_for_a_reader_after_the_writer_died(tmp_path):
    writer = workers.Board(tmp_path / "b", create=True)
    writer.write("loss() of lstm_fused")
    writer.write("forward")  # shorter than what it overwrites
    reader = workers.Board(tmp_path / "b")
    writer.close()
    assert reader.read() == "forward"
    reader.close()
    long = workers.Board(tmp_path / "c", create=True)
    long.write("x" * 5000)  # cut to the board, never past it
    assert len(long.read()) == workers.BOARD_BYTES - 2


def test_the_grace_past_the_timeout_is_bounded():
    assert workers.grace(0.5) == 1.0 and workers.grace(20) == 5.0 and workers.grace(1000) == 30.0


def test_without_a_fork_server_the_run_goes_on_in_process_and_says_so(tmp_path, monkeypatch):
    model = tmp_path / "m.py"
    model.write_text(
        "import numpy as np\nimport rnncheck\n\n@rnncheck.case\ndef quad():\n"
        "    return rnncheck.NumpyCase({'w': np.ones(3)}, lambda p: float((p['w'] ** 2).sum()), lambda p: {'w': 2 * p['w']})\n"
    )
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the server cannot start
    monkeypatch.setattr(zygote, "_SERVER", None)
    try:
        result = CliRunner().invoke(main, ["verify", str(model)], catch_exceptions=False)
    finally:
        monkeypatch.undo()
        zygote._SERVER = None
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "not isolated (as --in-process)" in result.output
