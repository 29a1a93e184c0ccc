"""Where the time of one default check of an 8.4M-parameter LSTM goes on a GPU (cProfile, top entries)."""

import cProfile
import pstats
import sys
import time

import torch

import rnncheck
from rnncheck import Options, verify_case

device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
torch.manual_seed(0)
model = torch.nn.LSTM(1024, 1024).to(device)
x = torch.randn(50, 16, 1024, device=device)
w = torch.randn(50, 16, 1024, device=device)
case = rnncheck.TorchCase(model, inputs=(x,), loss=lambda out: (out[0] * w).sum())
verify_case(case, Options(device=device))  # warm-up
for opts in (Options(device=device), Options(device=device, diagnostics=False, reference=False)):
    t0 = time.perf_counter()
    r = verify_case(case, opts)
    print(f"{'default' if opts.diagnostics else 'probes only'}: {time.perf_counter() - t0:.2f} s, verdict {r.verdict}")
cProfile.run("verify_case(case, Options(device=device))", "/tmp/gpu.prof")
pstats.Stats("/tmp/gpu.prof").sort_stats("tottime").print_stats(15)
