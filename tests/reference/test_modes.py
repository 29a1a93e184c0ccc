"""The architectures are named once: Mode carries each one's gates, gate count and activation, and no
module compares a mode with a string literal (internal structure under test)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rnncheck.reference import GATES, MODES, Mode, Spec

import rnncheck


@pytest.mark.parametrize(
    "mode, gates, count, activation",
    [
        ("lstm", ("i", "f", "g", "o"), 4, None),
        ("gru", ("r", "z", "n"), 3, None),
        ("rnn_tanh", (), 1, "tanh"),
        ("rnn_relu", (), 1, "relu"),
        ("rnn_sigmoid", (), 1, "sigmoid"),
    ],
)
def test_a_mode_knows_its_gates_and_activation(mode, gates, count, activation):
    m = Mode(mode)
    assert (m.gates, m.gate_count, m.activation, m.plain) == (gates, count, activation, not gates)
    spec = Spec(mode, 3, 4)
    assert spec.mode is m and spec.gates == gates and spec.gate_count == count
    assert GATES.get(mode, ()) == gates and mode in MODES


def test_an_unknown_mode_is_refused_with_the_choices():
    with pytest.raises(
        ValueError, match="unknown mode 'lstn'; choose one of rnn_tanh, rnn_relu, rnn_sigmoid, lstm, gru"
    ):
        Spec("lstn", 3, 4)


def test_no_module_compares_a_mode_with_a_string_literal():
    root = Path(rnncheck.__file__).parent
    files = [*root.rglob("*.py"), *Path(rnncheck.reference.__file__).parent.glob("*.py")]
    literal = "|".join(m.value for m in Mode)
    pattern = re.compile(rf"""(==|!=|\bin\b|\bis\b)\s*\(?\s*["']({literal})["']|["']({literal})["']\s*(==|!=)""")
    offenders = [
        f"{p.name}:{i}"
        for p in files
        if p.name != "modes.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert not offenders, offenders
    assert pattern.search('if mode == "lstm":') and pattern.search('x in ("gru", "lstm")')  # the rule can fail
