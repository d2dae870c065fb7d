"""The oracle for dropout masks drawn ahead: a model without a ``dropout_masks`` method."""

from flax import nnx


class MasksDrawnPerStep(nnx.Module):
    """``model`` behind a model without a ``dropout_masks`` method: training then passes
    each step's key, and ``model`` draws that step's masks inside the scan."""

    def __init__(self, model: nnx.Module):
        self.model = model

    def __call__(self, x, *, train=False, dropout_key=None):
        return self.model(x, train=train, dropout_key=dropout_key)
