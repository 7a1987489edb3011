"""Optimizers for least-squares training problems (PINNs): the residual-Jacobian core, energy natural
gradient descent, Gauss-Newton, Levenberg-Marquardt, and L-BFGS with a stop reason.

Natural-gradient and Gauss-Newton methods follow ``torch.optim.Optimizer`` but their ``step`` takes a
*residual closure* (a :class:`ResidualFunction`, or a pure ``fn(theta) -> r``), from which they
compute the residual vector and its Jacobian with ``torch.func``. See ``docs/pinns.md``.
"""
from .engd import ENGD
from .gauss_newton import GaussNewton, LevenbergMarquardt
from .lbfgs import LBFGS, LBFGSReport
from .residual import (PointwiseResidual, ResidualFunction, ResidualTerm, as_residual_function,
                       gauss_newton_direction, model_residual, model_terms)

__all__ = ["ENGD", "GaussNewton", "LevenbergMarquardt", "LBFGS", "LBFGSReport", "PointwiseResidual",
           "ResidualFunction", "ResidualTerm", "as_residual_function", "gauss_newton_direction",
           "model_residual", "model_terms"]
