"""A torch model that claims to be an architecture is compared with the NumPy reference on its own first
input; a claim that cannot be compared is refused in words."""

from __future__ import annotations

import torch

import rnncheck


class HandLSTM(torch.nn.Module):
    """nn.LSTM's equations written out, with nn.LSTM's parameter names; ``flip`` squashes o with tanh."""

    def __init__(self, flip: bool = False, forget_sign: bool = False):
        super().__init__()
        self.inner = torch.nn.LSTM(3, 4)
        self.flip, self.forget_sign = flip, forget_sign

    def forward(self, x):
        p = dict(self.inner.named_parameters())
        h = c = torch.zeros(x.shape[1], 4, dtype=x.dtype)
        hs = []
        for t in range(x.shape[0]):
            z = x[t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T + p["bias_hh_l0"]
            i, f, g, o = z.chunk(4, dim=-1)
            c = torch.sigmoid(-f if self.forget_sign else f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = (torch.tanh(o) if self.flip else torch.sigmoid(o)) * torch.tanh(c)
            hs.append(h)
        return torch.stack(hs)


def _case(model):
    torch.manual_seed(0)
    model = model.double()
    names = {n: f"inner.{n}" for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")}
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    return rnncheck.TorchCase(model, inputs=(x,), reference="lstm", reference_map=names)


def test_a_faithful_model_matches_the_reference_and_a_wrong_gate_is_named_at_step_0():
    good = rnncheck.verify_case(_case(HandLSTM()))
    assert any(f.kind == "forward_match" for f in good.findings)
    bad = rnncheck.verify_case(_case(HandLSTM(flip=True)))
    (diverges,) = [f for f in bad.findings if f.kind == "forward_mismatch"]
    assert diverges.location["step"] == 0
    assert diverges.location["explanation"] == "gate o: tanh where sigmoid belongs"


def test_a_flipped_forget_gate_sign_is_named_at_step_1_where_c_first_counts():
    bad = rnncheck.verify_case(_case(HandLSTM(forget_sign=True)))
    (diverges,) = [f for f in bad.findings if f.kind == "forward_mismatch"]
    assert diverges.location["step"] == 1  # at step 0 the forget gate multiplies c_0 = 0
    assert (
        diverges.location["explanation"]
        == "gate f: 1 − sigmoid where sigmoid belongs (its pre-activation's sign flipped)"
    )


def test_a_model_with_no_floating_input_cannot_claim_a_reference():
    class Embedded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 3)
            self.inner = torch.nn.LSTM(3, 4)

        def forward(self, tokens):
            return self.inner(self.emb(tokens))[0]

    case = rnncheck.TorchCase(Embedded().double(), inputs=(torch.randint(0, 10, (5, 2)),), reference="lstm")
    result = rnncheck.verify_case(case)
    assert "the model has no floating-point input sequence to compare on" in " ".join(
        f.message for f in result.findings
    )
