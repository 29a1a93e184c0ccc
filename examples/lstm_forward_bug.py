"""An LSTM whose *forward* pass is wrong, while its gradients are consistent.

``BuggyLSTM`` writes the LSTM step out in torch ops and lets autograd do the backward,
so finite differences agree with its gradient: every gradient checker passes it.  But
its output is ``h_t = o_t ⊙ c_t`` where the LSTM has ``h_t = o_t ⊙ tanh(c_t)``.

It names the architecture it implements (``reference="lstm"``), so rnncheck runs the
NumPy reference on the same weights and inputs and compares the hidden states step by
step: the forward differs first at step 0, and of the single-gate substitutions it
tries, "the output gate multiplies c_t where it should multiply tanh(c_t)" is the one
that reproduces the model's state.  ``fixed_lstm`` is the same module without the bug.
"""

import torch
from torch import nn

import rnncheck

EXPECTED = {"buggy_lstm": "fail", "fixed_lstm": "pass"}


class HandLSTM(nn.Module):
    def __init__(self, input_size, hidden_size, bug):
        super().__init__()
        k = hidden_size**-0.5
        self.W_x = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-k, k))
        self.W_h = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-k, k))
        self.b = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.hidden_size, self.bug = hidden_size, bug

    def forward(self, x):
        T, B, _ = x.shape
        h = x.new_zeros(B, self.hidden_size)
        c = x.new_zeros(B, self.hidden_size)
        outs = []
        for t in range(T):
            i, f, g, o = (x[t] @ self.W_x.T + h @ self.W_h.T + self.b).chunk(4, dim=1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * c if self.bug else o * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs), (h, c)


def _case(bug):
    torch.manual_seed(0)
    model = HandLSTM(5, 8, bug).double()
    x = torch.randn(12, 3, 5, dtype=torch.float64)
    return rnncheck.TorchCase(
        model,
        inputs=(x,),
        loss=lambda out: out[0].pow(2).sum(),
        reference="lstm",
        # the reference keeps two biases; this model has one, so bias_hh_l0 is taken as zero
        reference_map={"weight_ih_l0": "W_x", "weight_hh_l0": "W_h", "bias_ih_l0": "b"},
    )


@rnncheck.case
def buggy_lstm():
    return _case(bug=True)


@rnncheck.case
def fixed_lstm():
    return _case(bug=False)
