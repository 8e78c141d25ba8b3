"""BIDS datasets as DATA: the images of one suffix, labelled from a ``participants.tsv`` column.

A folder with a ``dataset_description.json`` is a BIDS dataset (the Brain
Imaging Data Structure). brainmri lists it with pybids (``BIDSLayout``,
derivatives left out, nothing written into the folder: its index lives in
memory) and takes

* every NIfTI image of one suffix (``--bids-suffix``, default ``T1w``),
  every session and run of it, and
* its class from one column of ``participants.tsv`` (``--bids-label
  diagnosis``), its subject (``sub-01``) as the group that splits never
  separate, so that two sessions of one person are never on both sides.

Subjects whose label is blank or ``n/a``, and images of subjects that
``participants.tsv`` does not list, are skipped and reported, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brainmri.errors import ConfigError, DataError

#: The file that makes a folder a BIDS dataset.
DESCRIPTION = "dataset_description.json"

#: Values of participants.tsv that mean "no value" (BIDS writes n/a).
_BLANK = {"", "n/a", "na", "nan"}


@dataclass(frozen=True)
class BidsQuery:
    """What to take from a BIDS dataset.

    Parameters
    ----------
    label : str or None
        The ``participants.tsv`` column that holds each subject's class
        (``--bids-label``); required for a BIDS dataset.
    suffix : str
        The BIDS suffix of the images to take (``--bids-suffix``: ``T1w``,
        ``T2w``, ``FLAIR``...).
    """

    label: str | None = None
    suffix: str = "T1w"

    def __post_init__(self):
        if not isinstance(self.suffix, str) or not self.suffix.strip() or not self.suffix.isalnum():
            raise ConfigError(f"--bids-suffix must be a BIDS suffix such as T1w or FLAIR, got {self.suffix!r}")


@dataclass(frozen=True)
class BidsImage:
    """One image of a BIDS dataset: its file, class and subject (``sub-<label>``)."""

    path: Path
    label: str
    subject: str


def is_bids(folder: Path) -> bool:
    """Whether ``folder`` is the root of a BIDS dataset (it holds ``dataset_description.json``)."""
    return (Path(folder) / DESCRIPTION).is_file()


def bids_images(root: Path, query: BidsQuery) -> tuple[list[BidsImage], list[dict]]:
    """The images ``query`` selects in the BIDS dataset ``root``, and what was skipped (``{path, reason}``).

    Raises
    ------
    DataError
        No ``--bids-label`` given, no ``participants.tsv``, the column is not
        in it, or no image has the suffix (the message lists what there is).
    """
    labels = _participants(root, query)
    layout = _layout(root)
    files = sorted(Path(f.path) for f in layout.get(suffix=query.suffix, extension=[".nii", ".nii.gz"]))
    if not files:
        found = sorted(layout.get_suffixes())
        raise DataError(
            f"{root}: no NIfTI images with the BIDS suffix {query.suffix} (found: {', '.join(found) or 'none'}); "
            "choose one with --bids-suffix"
        )
    images, problems, skipped = [], [], {}
    for path in files:
        subject = next((part for part in path.relative_to(root).parts if part.startswith("sub-")), None)
        if subject is None or subject not in labels:
            rel = path.relative_to(root).as_posix()
            problems.append(
                {"path": rel, "reason": "its subject is not in participants.tsv; add a row for it, or remove it"}
            )
        elif labels[subject].strip().lower() in _BLANK:
            skipped[subject] = skipped.get(subject, 0) + 1
        else:
            images.append(BidsImage(path, labels[subject].strip(), subject))
    problems += [
        {
            "path": subject,
            "reason": f"participants.tsv gives no {query.label} (blank or n/a); its {n} image(s) were skipped",
        }
        for subject, n in sorted(skipped.items())
    ]
    return images, problems


def _participants(root: Path, query: BidsQuery) -> dict[str, str]:
    """``{participant_id: label}`` from the ``query.label`` column of ``participants.tsv``."""
    import pandas as pd

    table = root / "participants.tsv"
    if query.label is None:
        hint = f" (its columns: {', '.join(_columns(table))})" if table.is_file() else ""
        raise DataError(
            f"{root}: a BIDS dataset ({DESCRIPTION}); name the participants.tsv column that holds the class "
            f"with --bids-label COLUMN{hint}"
        )
    if not table.is_file():
        raise DataError(
            f"{root}: a BIDS dataset without participants.tsv; brainmri takes each subject's class from its "
            f"--bids-label column ({query.label}), add the file"
        )
    try:
        frame = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{table}: not a readable tab-separated table ({exc}); fix it") from None
    if "participant_id" not in frame.columns or query.label not in frame.columns:
        missing = "participant_id" if "participant_id" not in frame.columns else query.label
        raise DataError(
            f"{table}: no column {missing!r} (columns: {', '.join(frame.columns)}); "
            + ("name the label column with --bids-label" if missing == query.label else "BIDS requires it")
        )
    return dict(zip(frame["participant_id"].str.strip(), frame[query.label], strict=True))


def _columns(table: Path) -> list[str]:
    with open(table, encoding="utf-8-sig") as fh:
        return [c.strip() for c in fh.readline().rstrip("\n").split("\t")]


def _layout(root: Path):
    """pybids' index of ``root``: not validated (a dataset a validator would flag is still read), derivatives out."""
    try:
        from bids import BIDSLayout
    except ImportError:
        raise ConfigError(
            f"{root} is a BIDS dataset, and reading one needs pybids: pip install 'brainmri[bids]'"
        ) from None
    try:
        return BIDSLayout(root, validate=False, derivatives=False)
    except Exception as exc:  # noqa: BLE001 - pybids raises its own and builtin types for a broken tree
        raise DataError(f"{root}: pybids cannot index this BIDS dataset ({exc}); fix {DESCRIPTION}") from None
