"""The flow's results as types, written in the JSON report's shape (internal structure under test)."""

from __future__ import annotations

from rnncheck.flowresults import (  # the module under test
    FlowDiagnostics,
    FlowVerdict,
    LayerFlow,
    Nonfinite,
    NotComputed,
    TwinAgreement,
)


def test_a_layer_leaves_out_what_was_not_measured_and_writes_why_a_part_was_not():
    flow = LayerFlow("lstm/l0", "lstm", 3, profile=[1.0, 0.5, 0.25])
    flow.jacobian = NotComputed("runs on request: --jacobian")
    out = flow.to_json()
    assert out["jacobian"] == {"not_computed": "runs on request: --jacobian"}
    assert out["structure"] == {} and out["gates"] == {}  # never set: an empty object, as before
    assert not {"profile_c", "lyapunov", "nonfinite", "source", "channels"} & set(out)


def test_the_first_nonfinite_value_is_written_with_the_keys_its_pass_has():
    forward = Nonfinite("cell", 7, "h", k=7, cause="input", explanation="it came in", source={"tensor": "x"})
    assert forward.to_json() == {
        "layer": "cell",
        "step": 7,
        "tensor": "h",
        "k": 7,
        "cause": "input",
        "explanation": "it came in",
        "source": {"tensor": "x"},
        "pass": "forward",
    }
    made = Nonfinite("cell", 2, "h", k=2, cause="operation", explanation="made", operation=None)
    assert made.to_json()["operation"] is None  # "not found" is said, not left out
    backward = Nonfinite("cell", 4, "dL/dh", "backward", cause="overflow", explanation="grew")
    assert "k" not in backward.to_json() and backward.to_json()["pass"] == "backward"


def test_the_fail_on_policy_lives_with_the_verdict():
    assert FlowVerdict.VANISHING.failure(("vanishing",)) == (
        "the gradient flow is vanishing, which --fail-on vanishing makes a failure"
    )
    assert FlowVerdict.HEALTHY.failure(("vanishing", "exploding")) is None


def test_the_diagnostics_write_the_twin_and_the_cause_only_where_known():
    d = FlowDiagnostics(gradient_flow="exploding", twin=TwinAgreement(1, 1e-15, True))
    out = d.to_json()
    assert out["gradient_flow"] == FlowVerdict.EXPLODING and out["twin"]["reproduces"] is True
    assert "nonfinite_cause" not in out
