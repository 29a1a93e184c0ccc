"""A diagonal linear recurrence h_t = a_t ⊙ h_(t-1) + b_t, written four ways, each checked against the plain loop.

This is the recurrence inside minGRU, LRU, Mamba's selective scan and S4D.  The parallel
forms are what people write by hand and get wrong:

- ``log_space_scan``: Heinsen's scan in log space (cumsum and logcumsumexp), as minGRU does;
- ``blelloch_scan``: a work-efficient up-sweep/down-sweep scan with a hand-written backward
  pass, itself a reverse scan, as mamba.py's pscan does;
- ``chunked_scan``: a scan in chunks, quadratic inside a chunk and carrying the state
  across, as Mamba-2's SSD does.

``MinGRU`` has both forms in one module: ``forward`` runs the log-space scan over the whole
sequence, ``step`` one step, and ``rnncheck.StepCase`` compares the two, owning the step loop.
Its ``forward`` shows rnncheck its states with ``rnncheck.record(..., decay=...)``, so the
flow report gives every channel's horizon.

    rnncheck verify examples/linear_scans.py
"""

import torch
import torch.nn.functional as F

import rnncheck


def sequential_scan(a, b, h0):
    """The reference: h_t = a_t * h_(t-1) + b_t, one step at a time.  a, b: (B, T, D); h0: (B, D)."""
    h, hs = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        hs.append(h)
    return torch.stack(hs, dim=1)


def log_space_scan(a, b, h0):
    """The same recurrence in log space, for positive a, b and h0 (minGRU's form)."""
    log_b = torch.cat([torch.log(h0).unsqueeze(1), torch.log(b)], dim=1)
    a_star = F.pad(torch.cumsum(torch.log(a), dim=1), (0, 0, 1, 0))
    return torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))[:, 1:]


def _blelloch(a, b):
    """Inclusive scan of the pairs (a_t, b_t) under (a1, b1)·(a2, b2) = (a1 a2, a2 b1 + b2), along dim 1."""
    B, T, D = b.shape
    P = 1 << max(T - 1, 1).bit_length()  # padded to a power of two with the identity (1, 0)
    A = torch.cat([a, a.new_ones(B, P - T, D)], dim=1)
    X = torch.cat([b, b.new_zeros(B, P - T, D)], dim=1)
    A0, X0 = A, X
    step = 1
    while step < P:  # up-sweep: each right child takes the total of its subtree
        right = torch.arange(2 * step - 1, P, 2 * step)
        A, X = A.clone(), X.clone()
        X[:, right] = A[:, right] * X[:, right - step] + X[:, right]
        A[:, right] = A[:, right] * A[:, right - step]
        step *= 2
    A, X = A.clone(), X.clone()
    A[:, P - 1], X[:, P - 1] = 1.0, 0.0  # the exclusive prefix of the whole sequence starts at the identity
    step = P // 2
    while step >= 1:  # down-sweep: prefixes flow down, the left child's total folded into the right's
        right = torch.arange(2 * step - 1, P, 2 * step)
        left = right - step
        A, X = A.clone(), X.clone()
        la, lx = A[:, left].clone(), X[:, left].clone()
        A[:, left], X[:, left] = A[:, right], X[:, right]
        X[:, right] = la * X[:, right] + lx
        A[:, right] = A[:, right] * la
        step //= 2
    return (A0 * X + X0)[:, :T]  # exclusive prefix, then each step's own pair


class BlellochScan(torch.autograd.Function):
    """The scan with its own backward: the adjoint λ_t = g_t + a_(t+1) λ_(t+1) is a scan run in reverse."""

    @staticmethod
    def forward(ctx, a, b, h0):
        first = b[:, :1] + a[:, :1] * h0.unsqueeze(1)  # fold h0 into the first step
        h = _blelloch(a, torch.cat([first, b[:, 1:]], dim=1))
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, g):
        a, h, h0 = ctx.saved_tensors
        a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)  # a_(t+1), zero past the end
        lam = _blelloch(a_next.flip(1), g.flip(1)).flip(1)
        h_prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)
        return lam * h_prev, lam, (a[:, 0] * lam[:, 0])


def blelloch_scan(a, b, h0):
    return BlellochScan.apply(a, b, h0)


def chunked_scan(a, b, h0, chunk=8):
    """Quadratic inside each chunk (a masked matrix of decay ratios), the state carried from chunk to chunk."""
    h, outs = h0, []
    for s in range(0, a.shape[1], chunk):
        ac, bc = a[:, s : s + chunk], b[:, s : s + chunk]
        L = ac.shape[1]
        log_cum = torch.cumsum(torch.log(ac), dim=1)  # decays kept positive here, as Mamba's exp(Δ·A) are
        seg = log_cum.unsqueeze(2) - log_cum.unsqueeze(1)  # (B, t, j, D): log of a_(j+1) ⋯ a_t
        mask = torch.tril(torch.ones(L, L, dtype=torch.bool, device=a.device)).view(1, L, L, 1)
        decay = torch.exp(seg.masked_fill(~mask, float("-inf")))
        hc = torch.exp(log_cum) * h.unsqueeze(1) + (decay * bc.unsqueeze(1)).sum(2)
        outs.append(hc)
        h = hc[:, -1]
    return torch.cat(outs, dim=1)


def scan_inputs(seed=0, B=2, T=37, D=4, dtype=torch.float64):
    """Decays in (0.45, 0.95), positive inputs and a positive initial state, all requiring grad."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(B, T, D, generator=g, dtype=dtype) * 0.5 + 0.45
    b = torch.rand(B, T, D, generator=g, dtype=dtype) + 0.1
    h0 = torch.rand(B, D, generator=g, dtype=dtype) + 0.1
    return tuple(t.requires_grad_() for t in (a, b, h0))


@rnncheck.case
def log_space_vs_loop():
    return rnncheck.FunctionCase(log_space_scan, inputs=scan_inputs(), reference=sequential_scan, decay="a")


@rnncheck.case
def blelloch_vs_loop():
    return rnncheck.FunctionCase(blelloch_scan, inputs=scan_inputs(1), reference=sequential_scan)


@rnncheck.case
def chunked_vs_loop():
    return rnncheck.FunctionCase(chunked_scan, inputs=scan_inputs(2, dtype=torch.float32), reference=sequential_scan)


def g(x):
    """minGRU's positive activation, and its log."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x):
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class MinGRU(torch.nn.Module):
    """minGRU (Feng et al., 2024): h_t = (1 − z_t) ⊙ h_(t-1) + z_t ⊙ g(h̃_t), in parallel and step by step."""

    def __init__(self, n_in, n_hidden):
        super().__init__()
        self.to_gate = torch.nn.Linear(n_in, n_hidden)
        self.to_hidden = torch.nn.Linear(n_in, n_hidden)

    def forward(self, x, h0):  # x: (B, T, n_in), h0: (B, n_hidden), positive
        k, h_tilde = self.to_gate(x), self.to_hidden(x)
        log_a = -F.softplus(k)  # log(1 − z)
        log_b = -F.softplus(-k) + log_g(h_tilde)  # log(z · g(h̃))
        a_star = F.pad(torch.cumsum(log_a, dim=1), (0, 0, 1, 0))
        log_h0 = torch.log(h0).unsqueeze(1)
        h = torch.exp(a_star + torch.logcumsumexp(torch.cat([log_h0, log_b], dim=1) - a_star, dim=1))[:, 1:]
        return rnncheck.record(h, name="mingru", time_dim=1, decay=torch.exp(log_a))

    def step(self, x_t, h):
        z = torch.sigmoid(self.to_gate(x_t))
        h = (1 - z) * h + z * g(self.to_hidden(x_t))
        return h, h


@rnncheck.case
def mingru_parallel_vs_step():
    torch.manual_seed(0)
    model = MinGRU(3, 16).double()
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    return rnncheck.StepCase(model, inputs=x, state0=torch.full((2, 16), 0.5, dtype=torch.float64))


@rnncheck.case
def mingru_flow():
    """minGRU alone: its forward records the states and their decay, so every channel's horizon is reported."""
    torch.manual_seed(0)
    model = MinGRU(3, 64).double()
    x = torch.randn(4, 200, 3, dtype=torch.float64)
    return rnncheck.TorchCase(model, inputs=(x, torch.full((4, 64), 0.5, dtype=torch.float64)))


EXPECTED = {
    "log_space_vs_loop": "pass",
    "blelloch_vs_loop": "pass",
    "chunked_vs_loop": "pass",
    "mingru_parallel_vs_step": "pass",
    "mingru_flow": "pass",
}
