"""Optimizers for least-squares training problems (PINNs): the residual-Jacobian core, energy natural
gradient descent and its SPRING and KFAC variants, Gauss-Newton, Levenberg-Marquardt, L-BFGS with a stop
reason; the loss-balancing first-order methods MultiAdam and ConFIG; SOAP and Shampoo by name.

Natural-gradient and Gauss-Newton methods follow ``torch.optim.Optimizer`` but their ``step`` takes a
*residual closure* (a :class:`ResidualFunction`, or a pure ``fn(theta) -> r``), from which they
compute the residual vector and its Jacobian with ``torch.func``. See ``docs/pinns.md``.
"""
from .conflict_free import ConFIG, config_direction
from .engd import ENGD
from .gauss_newton import GaussNewton, LevenbergMarquardt
from .kfac import KFAC
from .lbfgs import LBFGS, LBFGSReport
from .multiadam import MultiAdam
from .residual import (PointwiseResidual, ResidualFunction, ResidualTerm, as_residual_function,
                       gauss_newton_direction, model_residual, model_terms)
from .spring import SPRING

__all__ = ["ConFIG", "config_direction", "MultiAdam", "SPRING", "ENGD", "KFAC", "GaussNewton", "LevenbergMarquardt", "LBFGS", "LBFGSReport", "PointwiseResidual",
           "ResidualFunction", "ResidualTerm", "as_residual_function", "gauss_newton_direction",
           "model_residual", "model_terms"]
