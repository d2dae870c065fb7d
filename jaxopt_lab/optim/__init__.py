"""Functional optimizers: pure ``(init, update)`` gradient transformations.

Everything here is an :class:`optax.GradientTransformation` (or ``...ExtraArgs``) and
depends on JAX and optax's base types only: no Flax, TFDS or matplotlib.
"""

from jaxopt_lab.optim.base import (
    apply_updates,
    chain,
    tree_l2_norm,
    tree_vdot,
)
from jaxopt_lab.optim.clipping import (
    ApplyIfFiniteState,
    adaptive_grad_clip,
    apply_if_finite,
    clip,
    clip_by_global_norm,
)
from jaxopt_lab.optim.first_order import (
    AdamState,
    MomentumState,
    RmsState,
    RmsWithCountState,
    ScaleByScheduleState,
    StddevState,
    StddevWithCountState,
    SumOfSquaresState,
    adagrad,
    adam,
    adamw,
    add_decayed_weights,
    identity,
    rmsprop,
    scale_by_adam,
    scale_by_learning_rate,
    scale_by_momentum,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
    sgd,
)
from jaxopt_lab.optim.implicit import (
    CGResult,
    conjugate_gradient,
    free_coordinates,
    implicit_minimum,
)
from jaxopt_lab.optim.lbfgs import (
    LbfgsInfo,
    ScaleByLbfgsState,
    lbfgs,
    lbfgs_info,
    scale_by_lbfgs,
)
from jaxopt_lab.optim.linesearch import (
    LineSearchResult,
    LineSearchState,
    backtracking_search,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
    zoom_search,
)
from jaxopt_lab.optim.newton import newton, scale_by_newton
from jaxopt_lab.optim.registry import OPTIMIZER_NAMES, make_optimizer
from jaxopt_lab.optim.solvers import METHODS, OptimizeResult, Status, minimize

__all__ = [
    "METHODS",
    "CGResult",
    "conjugate_gradient",
    "free_coordinates",
    "implicit_minimum",
    "LbfgsInfo",
    "LineSearchResult",
    "LineSearchState",
    "OptimizeResult",
    "ScaleByLbfgsState",
    "backtracking_search",
    "lbfgs",
    "lbfgs_info",
    "minimize",
    "newton",
    "scale_by_newton",
    "Status",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
    "zoom_search",
    "OPTIMIZER_NAMES",
    "AdamState",
    "ApplyIfFiniteState",
    "MomentumState",
    "RmsState",
    "RmsWithCountState",
    "ScaleByScheduleState",
    "StddevState",
    "StddevWithCountState",
    "SumOfSquaresState",
    "adagrad",
    "adam",
    "adamw",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "apply_if_finite",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "identity",
    "make_optimizer",
    "rmsprop",
    "scale_by_adam",
    "scale_by_learning_rate",
    "scale_by_momentum",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_stddev",
    "sgd",
    "tree_l2_norm",
    "tree_vdot",
]
