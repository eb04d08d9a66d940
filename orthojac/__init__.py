"""orthojac: arbitrarily deep networks that are trainable by construction.

Layers whose input-to-output Jacobian is exactly orthogonal, near-orthogonal, a partial isometry with a
persistent subspace, or a stable (antisymmetric / Hamiltonian) integrator step, plus tools that measure
dynamical isometry of any model. See README.md.
"""

__version__ = "0.1.0"
