"""Hard-constraint layers and their mixture-of-experts form (Chalapathi, Du & Krishnapriyan, ICLR 2024).

* :mod:`.hard_constraint`: the differentiable Levenberg–Marquardt least-squares layer (implicit backward);
* :mod:`.moe`: uniform partition of the domain into experts, assembly of the constrained field;
* :mod:`.physics`: a PDE module's residual terms turned into the layer's residual function.

See ``docs/hard_constraints.md``.
"""
from .hard_constraint import LMInfo, LMSettings, hard_constraint_solve, lm_solve
from .moe import Partition, assemble
from .physics import ConstraintResidual, Term, as_terms, coordinate_jets, jet_names, term_residuals

__all__ = ["LMInfo", "LMSettings", "hard_constraint_solve", "lm_solve", "Partition", "assemble",
           "ConstraintResidual", "Term", "as_terms", "coordinate_jets", "jet_names", "term_residuals"]
