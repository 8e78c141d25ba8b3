"""The valid values of every method setting (``--params``), declared once and checked before any image is read.

A method's settings are its builder's keyword arguments (see
:meth:`~brainmri.models.registry.MethodSpec.settings`). Each has a rule
here: its type and range, the words it accepts, and whether ``null``
(None) is allowed. :data:`RULES` holds the rules of the names that several
methods share (``lr``, ``epochs``, ``batch_size``...); a method declares
its own with ``register_method(..., settings={...})`` where a name means
something else for it (``size`` is voxels a side for ``cnn3d``). The
contract test of the registry checks that every setting of every method has
a rule and that every default passes it.

Without these rules, ``ayadi-cnn.size=100000`` asked for 745 GiB after the
images were read, and ``rf.n_estimators=-1`` failed inside scikit-learn
after the features were computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from brainmri.data.preprocess import MAX_IMAGE_SIZE
from brainmri.data.volumes import MAX_VOLUME_SIZE
from brainmri.errors import ConfigError

__all__ = ["MAX_IMAGE_SIZE", "MAX_VOLUME_SIZE", "RULES", "Rule", "check_setting"]


@dataclass(frozen=True)
class Rule:
    """The valid values of one setting.

    Parameters
    ----------
    number : {"int", "float", None}
        The kind of number accepted (``"float"`` accepts integers too);
        None accepts no number.
    low, high : float or None
        Bounds of the number (None: unbounded on that side).
    low_open, high_open : bool
        The bound itself is excluded.
    words : tuple of str
        Strings accepted besides numbers (``"scale"`` for an SVM's gamma).
    boolean : bool
        ``true``/``false`` are accepted.
    none : bool
        ``null`` (None) is accepted.
    ints : bool
        A non-empty list of positive integers is accepted (layer widths).
    text : bool
        Any string is accepted (a name or a path that the builder checks).
    """

    number: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    words: tuple[str, ...] = ()
    boolean: bool = False
    none: bool = False
    ints: bool = False
    text: bool = False

    def accepts(self, value) -> bool:
        """Whether ``value`` is valid.

        >>> Rule("int", 1, 10).accepts(3), Rule("int", 1, 10).accepts(0), Rule("int", 1, 10).accepts(2.5)
        (True, False, False)
        """
        if value is None:
            return self.none
        if isinstance(value, bool):
            return self.boolean
        if isinstance(value, str):
            return self.text or value in self.words
        if isinstance(value, (list, tuple)):
            return self.ints and len(value) > 0 and all(_positive_int(v) for v in value)
        if self.number is None or not isinstance(value, Real) or not math.isfinite(value):
            return False
        if self.number == "int" and not isinstance(value, Integral):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        """The valid values in words.

        >>> Rule("float", 0, 1, high_open=True, none=True).describe()
        'a number from 0 to less than 1 or null'
        """
        parts = []
        if self.number is not None:
            parts.append(self._range())
        if self.ints:
            parts.append("a list of positive integers")
        parts += [repr(word) for word in self.words]
        if self.text:
            parts.append("a name")
        if self.boolean:
            parts.append("true or false")
        if self.none:
            parts.append("null")
        return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1]

    def _range(self) -> str:
        kind = "an integer" if self.number == "int" else "a number"
        low = None if self.low is None else f"{'more than ' if self.low_open else ''}{self.low:g}"
        high = None if self.high is None else f"{'less than ' if self.high_open else ''}{self.high:g}"
        if low and high:
            return f"{kind} from {low} to {high}"
        if low:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if high:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        return kind


def _positive_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


_PROBABILITY_BELOW_1 = Rule("float", 0, 1, high_open=True)

#: Rules of the settings that several methods share, by name.
RULES: dict[str, Rule] = {
    # training (brainmri.training.settings.TrainSettings)
    "epochs": Rule("int", 1, 100_000),
    "lr": Rule("float", 0, 10, low_open=True),
    "weight_decay": Rule("float", 0, 10),
    "batch_size": Rule("int", 2, 65_536),
    "label_smoothing": _PROBABILITY_BELOW_1,
    "ema_decay": Rule("float", 0, 1, low_open=True, high_open=True, none=True),
    "patience": Rule("int", 1, 100_000, none=True),
    "precision": Rule(words=("auto", "bf16", "fp32")),
    "channels_last": Rule(boolean=True),
    "val_fraction": Rule("float", 0, 0.5, low_open=True),
    "threads": Rule("int", 1, 4096, none=True),
    "dropout": _PROBABILITY_BELOW_1,
    "augment": Rule(boolean=True, text=True),  # parse_augment checks the words
    "style": Rule(words=("mixstyle", "dsu"), none=True),
    "sampling": Rule(words=("shuffle", "class", "source")),
    "class_weight": Rule(words=("balanced",), none=True),
    "tta": Rule(boolean=True),
    # networks
    "size": Rule("int", 8, MAX_IMAGE_SIZE),
    "width": Rule("int", 1, 1024),
    "hidden": Rule(ints=True),
    "backbone": Rule(text=True),
    "weights_file": Rule(text=True, none=True),
    "depths": Rule("int", 1, 8),
    "backbone_lr_factor": Rule("float", 0, 100, low_open=True),
    "unfreeze_after": Rule("int", 0, 100_000),
    "frozen_stages": Rule("int", 0, 16),
    # classical classifiers (scikit-learn's own constraints, checked before the features are computed)
    "kernel": Rule(words=("linear", "rbf", "poly", "sigmoid"), none=True),
    "C": Rule("float", 0, low_open=True),
    "gamma": Rule("float", 0, low_open=True, words=("scale", "auto")),
    "degree": Rule("int", 1, 10),
    "n_estimators": Rule("int", 1, 100_000),
    "max_depth": Rule("int", 1, 1_000, none=True),
    "max_features": Rule("float", 0, 1, low_open=True, words=("sqrt", "log2"), none=True),
    "min_samples_leaf": Rule("int", 1, 1_000_000),
    "classifier": Rule(words=("svm", "logreg")),
    # features
    "n_clusters": Rule("int", 2, 16),
    "level": Rule("int", 1, 8),
    "n_components": Rule("float", 0, 1, low_open=True),
}


def check_setting(method: str, name: str, value, rule: Rule) -> None:
    """Refuse ``value`` of the setting ``method.name`` unless ``rule`` accepts it.

    Raises
    ------
    ConfigError
        One line naming the setting, the value and the valid values.
    """
    if not rule.accepts(value):
        raise ConfigError(f"--params {method}.{name}={value!r}: not a valid value; {name} must be {rule.describe()}")
