"""Methods: one registry, one interface (fit on image paths + labels, predict class probabilities)."""

from brainmri.models.registry import MethodSpec, available_methods, get_method, register_method

__all__ = ["MethodSpec", "available_methods", "get_method", "register_method"]
