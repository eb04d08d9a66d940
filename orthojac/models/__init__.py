"""Whole networks assembled from :mod:`orthojac.nn`, built by name with :func:`create_model`."""

from .mlp import Classifier, PlainLayer, ResidualBlock
from .registry import (
    BODIES,
    FAMILIES,
    build_model,
    create_body,
    create_model,
    family_names,
    register_body,
    register_family,
)

__all__ = ["Classifier", "PlainLayer", "ResidualBlock", "FAMILIES", "create_body", "create_model",
           "family_names", "register_family", "BODIES", "build_model", "register_body"]

from .convnet import CONV_FAMILIES, ConvPlainLayer, ConvResidualBlock, create_convnet, register_conv_family  # noqa: E402

__all__ += ["CONV_FAMILIES", "ConvPlainLayer", "ConvResidualBlock", "create_convnet", "register_conv_family"]

from .stable import OPENINGS, StableNet, create_stable_model, hypothesis_loss, predict_labels  # noqa: E402

__all__ += ["StableNet", "create_stable_model", "hypothesis_loss", "predict_labels", "OPENINGS"]
