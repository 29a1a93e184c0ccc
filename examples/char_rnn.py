"""A character-level NumPy RNN in the style of the well-known minimal example.

Module-level weights, column vectors, a loss function that returns the loss and every
gradient, and — as in that example — the gradients clipped to [-5, 5] *inside* the
gradient function.  Clipping is a training-step decision; inside the gradient it makes
the returned numbers wrong wherever the true gradient is larger than 5, which for the
output bias of a 25-step sequence is most entries.

``char_rnn`` (clipping inside) fails; ``char_rnn_unclipped`` (the same code without the
clip) passes.  Both use ``inplace=True``: the functions read the module-level arrays,
so rnncheck writes each probe into those arrays and restores them afterwards.
"""

import numpy as np

import rnncheck

EXPECTED = {"char_rnn": "fail", "char_rnn_unclipped": "pass"}

data = "the cat sat on the mat, the rat ate the hat, and that is that. " * 2
chars = sorted(set(data))
vocab_size, hidden_size, seq_length = len(chars), 24, 60
char_to_ix = {ch: i for i, ch in enumerate(chars)}

rng = np.random.default_rng(0)
Wxh = rng.standard_normal((hidden_size, vocab_size)) * 0.01
Whh = rng.standard_normal((hidden_size, hidden_size)) * 0.01
Why = rng.standard_normal((vocab_size, hidden_size)) * 0.01
bh = np.zeros((hidden_size, 1))
by = np.zeros((vocab_size, 1))

inputs = [char_to_ix[ch] for ch in data[:seq_length]]
targets = [char_to_ix[ch] for ch in data[1 : seq_length + 1]]
hprev = np.zeros((hidden_size, 1))


def lossFun(inputs, targets, hprev, clip=True):
    """Forward and backward over one sequence; returns the loss, the gradients and the last state."""
    xs, hs, ys, ps = {}, {}, {}, {}
    hs[-1] = np.copy(hprev)
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab_size, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
        ys[t] = np.dot(Why, hs[t]) + by
        ps[t] = np.exp(ys[t]) / np.sum(np.exp(ys[t]))
        loss += -np.log(ps[t][targets[t], 0])
    dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
    dbh, dby = np.zeros_like(bh), np.zeros_like(by)
    dhnext = np.zeros_like(hs[0])
    for t in reversed(range(len(inputs))):
        dy = np.copy(ps[t])
        dy[targets[t]] -= 1
        dWhy += np.dot(dy, hs[t].T)
        dby += dy
        dh = np.dot(Why.T, dy) + dhnext
        dhraw = (1 - hs[t] * hs[t]) * dh
        dbh += dhraw
        dWxh += np.dot(dhraw, xs[t].T)
        dWhh += np.dot(dhraw, hs[t - 1].T)
        dhnext = np.dot(Whh.T, dhraw)
    if clip:
        for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
            np.clip(dparam, -5, 5, out=dparam)  # mitigate exploding gradients
    return loss, dWxh, dWhh, dWhy, dbh, dby, hs[len(inputs) - 1]


PARAMS = {"Wxh": Wxh, "Whh": Whh, "Why": Why, "bh": bh, "by": by}


def _case(clip):
    def loss(_):
        return lossFun(inputs, targets, hprev, clip)[0]

    def grad(_):
        loss, dWxh, dWhh, dWhy, dbh, dby, _h = lossFun(inputs, targets, hprev, clip)
        return loss, {"Wxh": dWxh, "Whh": dWhh, "Why": dWhy, "bh": dbh, "by": dby}

    return rnncheck.NumpyCase(PARAMS, loss=loss, grad=grad, inplace=True)


@rnncheck.case
def char_rnn():
    return _case(clip=True)


@rnncheck.case
def char_rnn_unclipped():
    return _case(clip=False)
