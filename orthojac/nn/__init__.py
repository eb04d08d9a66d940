"""Building blocks: activations, the orthogonality policy, and layers with a stated Jacobian claim."""

from .activations import Abs, Identity, ReLUk, SigmaK, Tanh, get_activation
from .dense import LimitLayer, OrthoFeedforward, OrthoResidual, PersistentSubspace
from .orthogonal import (
    EXACT_MAPS,
    INIT_METHODS,
    POLICIES,
    constrained_weights,
    orthogonal_init_,
    orthogonality_error,
    register_orthogonal,
)
from .registry import LAYERS, LayerSpec, randomize_, register_layer

__all__ = [
    "Abs", "Identity", "ReLUk", "SigmaK", "Tanh", "get_activation",
    "OrthoResidual", "OrthoFeedforward", "LimitLayer", "PersistentSubspace",
    "POLICIES", "INIT_METHODS", "EXACT_MAPS", "register_orthogonal", "orthogonal_init_",
    "constrained_weights", "orthogonality_error",
    "LAYERS", "LayerSpec", "register_layer", "randomize_",
]


def _register_builtin() -> None:
    """Register the dense families (each entry: width, policy, generator → layer)."""
    entries = {
        "ortho_residual_relu": lambda n, p, g: OrthoResidual(n, activation="relu", orthogonal=p, generator=g),
        "ortho_residual_relu_k": lambda n, p, g: OrthoResidual(n, activation="relu_k", orthogonal=p, generator=g),
        "ortho_residual_narrow": lambda n, p, g: OrthoResidual(n, hidden=max(1, n // 2), orthogonal=p, generator=g),
        "ortho_residual_learnable_k": lambda n, p, g: OrthoResidual(
            n, activation="relu_k", activation_kwargs={"breakpoints": (0.0, 0.5, 1.5), "learnable": True},
            orthogonal=p, generator=g),
        "ortho_residual_partial": lambda n, p, g: OrthoResidual(n, partial=True, orthogonal=p, generator=g),
        "ortho_feedforward_abs": lambda n, p, g: OrthoFeedforward(n, activation="abs", orthogonal=p, generator=g),
        "ortho_feedforward_sigma_k": lambda n, p, g: OrthoFeedforward(
            n, activation="sigma_k", activation_kwargs={"breakpoints": (0.0, 1.0, 2.0)}, orthogonal=p, generator=g),
        "ortho_feedforward_untied": lambda n, p, g: OrthoFeedforward(n, "abs", tied=False, orthogonal=p, generator=g),
        "ortho_feedforward_partial": lambda n, p, g: OrthoFeedforward(
            n, "relu", partial=True, tied=False, orthogonal=p, generator=g),
        "limit_residual": lambda n, p, g: LimitLayer(n, 0.1, orthogonal=p, generator=g),
        "limit_feedforward": lambda n, p, g: LimitLayer(n, 0.05, base="feedforward", orthogonal=p, generator=g),
        "pso_channels": lambda n, p, g: PersistentSubspace(n, max(1, n // 4), "channels", orthogonal=p, generator=g),
        "pso_bias": lambda n, p, g: PersistentSubspace(n, max(1, n // 4), "bias", orthogonal=p, generator=g),
    }
    for name, build in entries.items():
        register_layer(name, build, min_width=2)


_register_builtin()

from .conv import (  # noqa: E402
    ConvOrthoFeedforward,
    ConvOrthoResidual,
    OrthoDownsample,
    OrthogonalConv2d,
    conv_layer,
    random_orthogonal_kernel,
)

__all__ += ["OrthogonalConv2d", "ConvOrthoResidual", "ConvOrthoFeedforward", "OrthoDownsample",
            "random_orthogonal_kernel", "conv_layer"]


def _register_conv() -> None:
    """Conv families: ``width`` n gives C = max(1, n // 4) channels on a 4×6 circular grid (one sample is
    C×4×6, both sizes even so the Nyquist frequencies are exercised)."""
    for kind in ("orthogonal", "residual_relu", "residual_relu_k", "feedforward_abs", "feedforward_sigma_k"):
        register_layer(f"conv_{kind}", lambda n, p, g, kind=kind: conv_layer(kind, max(1, n // 4), (4, 6), p, g),
                       min_width=1, input_shape=lambda n: (max(1, n // 4), 4, 6))


_register_conv()

from .stable import (  # noqa: E402  (Haber & Ruthotto stable architectures)
    STABLE_ARCHS,
    AntisymmetricODE,
    LeapfrogODE,
    ResNetODE,
    StableDynamics,
    VerletODE,
    create_dynamics,
)

__all__ += ["StableDynamics", "ResNetODE", "AntisymmetricODE", "LeapfrogODE", "VerletODE", "STABLE_ARCHS",
            "create_dynamics"]


def _register_stable() -> None:
    """Dense stable networks (3 layers, T = 1, random weights) with their weight-dependent bounded claims."""
    for arch in STABLE_ARCHS:
        register_layer(f"stable_{arch}", lambda n, p, g, a=arch: create_dynamics(a, n, 3, 1.0, init="random",
                                                                                generator=g), min_width=2)


_register_stable()
