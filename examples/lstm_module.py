"""A sequence classifier with ``nn.LSTM`` inside, checked as any ``nn.Module`` is.

Float32, two layers, bidirectional, batch-first, with an initial state passed in as an
``(h0, c0)`` tuple that requires grad (so its gradient is checked too).
"""

import torch
from torch import nn

import rnncheck

EXPECTED = {"lstm_classifier": "pass"}


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(32, 3)

    def forward(self, x, state):
        out, _ = self.lstm(x, state)
        return self.head(out[:, -1])


@rnncheck.case
def lstm_classifier():
    torch.manual_seed(0)
    model = Classifier()
    x = torch.randn(4, 20, 8)
    h0 = torch.randn(4, 4, 16, requires_grad=True)
    c0 = torch.randn(4, 4, 16, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 2])
    return rnncheck.TorchCase(
        model,
        inputs=(x, (h0, c0)),
        # the labels follow the logits to whatever device the check runs on (--device cuda)
        loss=lambda logits: nn.functional.cross_entropy(logits, labels.to(logits.device)),
    )
