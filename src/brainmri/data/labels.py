"""Class labels: label maps (``--label-map``, ``--extra-label-map``) and the classes a test set may hold.

A map renames classes of a dataset (``glioma=tumor``) so that two
collections, or a finer and a coarser labelling, can be trained and tested
together; every class must be mapped or already be a target name, and a
class mapped twice is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from brainmri.data.dataset import Dataset, Item
from brainmri.errors import ConfigError, DataError


def parse_label_map(text: str | None, option: str = "--label-map") -> dict[str, str] | None:
    """A label map from a JSON file or an inline ``a=b,c=d`` list (``option`` names it in errors).

    >>> parse_label_map("glioma=tumor, notumor=no")
    {'glioma': 'tumor', 'notumor': 'no'}
    """
    if not text:
        return None
    path = Path(text)
    if text.endswith(".json") or path.is_file():
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique_keys(option, text))
        except FileNotFoundError:
            raise ConfigError(f"{option} {text}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{option} {text}: not a JSON object of class -> class ({exc})") from None
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ConfigError(f'{option} {text}: expected a JSON object such as {{"glioma": "tumor"}}')
        return {str(k): v for k, v in mapping.items()}
    mapping = {}
    for part in text.split(","):
        if part.strip().count("=") != 1:
            raise ConfigError(f"{option}: '{part.strip()}' is not of the form old=new (e.g. glioma=tumor,notumor=no)")
        old, new = (s.strip() for s in part.split("="))
        if not old or not new:
            raise ConfigError(f"{option}: '{part.strip()}' has an empty class name")
        if old in mapping:
            raise ConfigError(
                f"{option}: class {old!r} is mapped twice ({old}={mapping[old]} and {old}={new}); map each class once"
            )
        mapping[old] = new
    return mapping


def unique_keys(option: str, text: str):
    """A ``json.loads`` object hook that refuses a key given twice in one object (JSON itself allows it).

    ``option`` and ``text`` (the file) name the source in the message.
    """

    def hook(pairs: list[tuple[str, object]]) -> dict:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                raise ConfigError(
                    f"{option} {text}: key {key!r} is given twice ({seen[key]!r} and {value!r}); give each once"
                )
            seen[key] = value
        return seen

    return hook


def apply_label_map(
    dataset: Dataset, mapping: dict[str, str] | None, what: str, *, option: str = "--label-map"
) -> Dataset:
    """Rename classes of ``dataset``; every class must be mapped or already a target name.

    ``what`` names the dataset and ``option`` the map in error messages.

    Raises
    ------
    ConfigError
        The map leaves some class of ``dataset`` unmapped.
    """
    if not mapping:
        return dataset
    targets = set(mapping.values())
    unmapped = sorted(c for c in dataset.classes if c not in mapping and c not in targets)
    if unmapped:
        raise ConfigError(
            f"{option} leaves {what} class(es) {', '.join(unmapped)} unmapped; add them (e.g. {unmapped[0]}=<new name>)"
        )
    items = [Item(it.path, mapping.get(it.label, it.label), it.subject, it.split) for it in dataset.items]
    return Dataset(dataset.root, items, dataset.source, dataset.ignored, dataset.problems)


def check_test_classes(train_classes, test_classes, test_path: str) -> None:
    """Every class of the test set must be one the model was trained on."""
    unseen = sorted(set(test_classes) - set(train_classes))
    if unseen:
        raise DataError(
            f"{test_path}: test classes {', '.join(unseen)} were never seen in training "
            f"(training classes: {', '.join(sorted(train_classes))}); map them with --label-map"
        )
