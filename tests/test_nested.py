"""Tensors found and replaced inside nests of tuples, lists, dicts and namedtuples (internal structure under test)."""

from __future__ import annotations

from collections import namedtuple

import torch

from rnncheck.nested import common_dtype, float_outputs, leaves, replace  # the module under test

State = namedtuple("State", "h c")


def test_every_tensor_has_a_path_and_a_replacement_keeps_the_nest():
    x, h, c, n = torch.ones(2), torch.zeros(3), torch.zeros(3), torch.arange(3)
    nest = (x, {"state": State(h, c)}, [n])
    paths = dict(leaves(nest, "input"))
    assert list(paths) == ["input[0]", "input[1]['state'][0]", "input[1]['state'][1]", "input[2][0]"]
    new = torch.full((3,), 5.0)
    out = replace(nest, "input", {"input[1]['state'][1]": new}, lambda t: t * 2)
    assert isinstance(out[1]["state"], State) and out[1]["state"].c is new
    assert torch.equal(out[0], 2 * x) and torch.equal(out[2][0], 2 * n)


def test_floating_outputs_and_the_widest_dtype():
    out = (torch.ones(2, dtype=torch.float16), torch.arange(2), {"y": torch.ones(1, dtype=torch.float64)})
    assert [t.dtype for t in float_outputs(out)] == [torch.float16, torch.float64]
    assert common_dtype(float_outputs(out)) == torch.float64
    assert common_dtype([torch.arange(2)]) == torch.float32
