"""rnncheck's reference: backpropagation through time in plain NumPy.

One cell per module, each with its forward and backward side by side and the
equations in the docstrings:

- :mod:`.rnn`  Elman RNN (tanh, relu, sigmoid)
- :mod:`.lstm` LSTM, PyTorch's gate order i, f, g, o
- :mod:`.gru`  GRU, PyTorch's gate order r, z, n
- :mod:`.stack` layers, directions and batch layout, as ``nn.RNN``/``nn.LSTM``/``nn.GRU``
- :mod:`.readout` linear readout and mean squared error (the article's model)

It depends on NumPy alone and runs on float32, float64 and complex128 arrays.
"""

from .modes import Mode
from .stack import GATES, MODES, Cache, Gradients, Spec, backward, backward_layer, forward

__all__ = ["GATES", "MODES", "Cache", "Gradients", "Mode", "Spec", "backward", "backward_layer", "forward"]
