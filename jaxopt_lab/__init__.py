"""jaxopt_lab: a JAX optimization toolkit and lab.

``import jaxopt_lab as jl`` gives the functional optimizers (``jl.sgd``, ``jl.adam``,
``jl.lbfgs``, ...), the composition helpers (``jl.chain``, ``jl.apply_updates``) and the
full-batch driver ``jl.minimize``. Training (``jaxopt_lab.training``: data, models, the
train step, ``fit``, run folders, sweeps) lives in its own package, imported on demand so
that ``import jaxopt_lab`` stays light (no Flax, no TensorFlow).
"""

from jaxopt_lab.optim import *  # noqa: F403  (the public optimizer API)
from jaxopt_lab.optim import __all__ as _optim_all

__version__ = "0.1.0"
__all__ = [*_optim_all, "__version__"]
