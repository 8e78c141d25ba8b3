"""Datasets: the one manifest object every brainmri feature works on.

A :class:`Dataset` is a list of :class:`Item` (path, label, optional subject
and split) plus what was ignored or found wrong while listing it. It comes
from

* a folder of class sub-folders, optionally below split folders
  (``Training/Testing``, ``train/val/test``, matched case-insensitively), or
* a CSV manifest with columns ``path,label[,subject][,split][,source]``, the
  paths relative to the CSV file, or
* a BIDS dataset (:mod:`brainmri.data.bids`): one suffix's images, labelled
  from a ``participants.tsv`` column, subjects as groups.

Listing never decodes images; unreadable files are found by the readers and
reported by the batch job that reads them. What listing can see is reported
in :attr:`Dataset.problems` and skipped, never silently used:

* directory symlinks that lead back to a folder containing them (a loop: one
  such link listed the data 41 times, two never finished) or to another folder
  of the dataset (its images would be listed again under another class);
  symlinks to folders outside the dataset are followed;
* CSV rows naming a file outside the CSV's folder (unless ``allow_outside``),
  rows repeating an earlier row (dropped, counted), files listed with
  conflicting labels, subjects or splits (every row of that file skipped),
  and rows with a blank split when others have one (kept for k-fold, but an
  official split uses them neither for training nor for testing).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainmri.data.bids import DESCRIPTION, BidsQuery, bids_images, is_bids
from brainmri.data.dicom import find_series, series_items
from brainmri.data.io import file_problem, image_format
from brainmri.errors import ConfigError, DataError

#: Split folder names understood in a folder dataset (lower case) -> canonical split.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class Item:
    """One image of a dataset.

    Attributes
    ----------
    path : Path
        Absolute path of the file.
    label : str
        Class name.
    subject : str or None
        Subject (patient) id when known; items of one subject never straddle
        a train/test boundary.
    split : str or None
        ``"train"``, ``"val"`` or ``"test"`` when the dataset defines one.
    source : str or None
        The collection, hospital or scanner the image came from, when the
        manifest says (its ``source`` column): ``benchmark --grouping source``
        holds out one source at a time.
    """

    path: Path
    label: str
    subject: str | None = None
    split: str | None = None
    source: str | None = None


@dataclass
class Dataset:
    """Items of a dataset and what was skipped while listing them.

    Attributes
    ----------
    root : Path
        The folder the dataset was read from (for a CSV, the CSV's folder);
        paths in every output are written relative to it.
    items : list of Item
    source : str
        ``"folder"``, ``"csv"`` or ``"bids"``.
    ignored : list of str
        Hidden files and folders, and files outside any class folder, that
        were not taken as items (relative paths).
    problems : list of dict
        ``{path, reason}`` for what could not be used or needs a look (empty
        class folders, directory symlinks not followed, CSV rows naming
        missing files or files outside the CSV's folder, duplicate or
        conflicting rows, blank splits).
    """

    root: Path
    items: list[Item]
    source: str
    ignored: list[str] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def classes(self) -> list[str]:
        """Sorted class names."""
        return sorted({it.label for it in self.items})

    @property
    def labels(self) -> np.ndarray:
        """Label of every item, as an array of str."""
        return np.array([it.label for it in self.items], dtype=object)

    @property
    def has_subjects(self) -> bool:
        return bool(self.items) and all(it.subject for it in self.items)

    @property
    def has_sources(self) -> bool:
        """Whether every item has a source (a manifest's ``source`` column)."""
        return bool(self.items) and all(it.source for it in self.items)

    @property
    def splits(self) -> list[str]:
        return sorted({it.split for it in self.items if it.split})

    def relpath(self, item: Item) -> str:
        """Path of ``item`` relative to :attr:`root`, with forward slashes."""
        try:
            return item.path.relative_to(self.root).as_posix()
        except ValueError:
            return item.path.as_posix()

    def subset(self, indices) -> Dataset:
        """A dataset with the items at ``indices`` (same root)."""
        return Dataset(self.root, [self.items[i] for i in indices], self.source)

    def counts(self) -> dict[str, dict[str, int]]:
        """Item counts ``{split or "all": {class: n}}``."""
        out: dict[str, dict[str, int]] = {}
        for it in self.items:
            per = out.setdefault(it.split or "all", {})
            per[it.label] = per.get(it.label, 0) + 1
        return {s: dict(sorted(c.items())) for s, c in sorted(out.items())}


def load_dataset(source: str | Path, *, allow_outside: bool = False, bids: BidsQuery | None = None) -> Dataset:
    """List a dataset from a folder, a CSV manifest or a BIDS dataset.

    Parameters
    ----------
    source : str or Path
        A folder of class sub-folders (optionally under split folders), a
        ``.csv`` manifest, or the root of a BIDS dataset (a folder with
        ``dataset_description.json``, :mod:`brainmri.data.bids`).
    allow_outside : bool
        Accept CSV paths that lead out of the CSV's folder (``../x.png`` or
        absolute paths; ``--allow-outside-paths``). Off by default, so a
        manifest cannot pull in files from elsewhere unnoticed.
    bids : BidsQuery, optional
        What to take from a BIDS dataset (``--bids-label``, ``--bids-suffix``);
        its ``label`` is required there and refused elsewhere.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        The path does not exist, the CSV is not UTF-8 or lacks a required
        column, images sit directly in the folder instead of class
        sub-folders, or no image was found at all.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder; pass a dataset folder or a CSV manifest")
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise DataError(
                f"{source}: a dataset is a folder of class sub-folders or a .csv manifest, not a {source.suffix or 'plain'} file"
            )
        dataset = _from_csv(source, allow_outside)
    elif is_bids(source):
        dataset = _from_bids(source, bids or BidsQuery())
    else:
        dataset = _from_folder(source)
    if bids is not None and bids.label is not None and dataset.source != "bids":
        raise ConfigError(
            f"{source}: --bids-label {bids.label} is for a BIDS dataset (a folder with {DESCRIPTION}); "
            "this is not one, drop the option"
        )
    stray = [p for p in dataset.ignored if image_format(p) and not _hidden(Path(p).name)]
    if not dataset.items and stray:
        raise DataError(
            f"{source}: {len(stray)} image(s) sit one level too high, outside any class sub-folder (e.g. {stray[0]}); "
            "expected DATA/<class>/<image> (optionally DATA/Training/<class>/<image>): move them into one folder per class"
        )
    if not dataset.items and dataset.problems:
        first, more = dataset.problems[0], len(dataset.problems) - 1
        raise DataError(
            f"{source}: no usable images; {first['path']}: {first['reason']}"
            + (f" (and {more} more problem(s) like it)" if more else "")
        )
    if not dataset.items:
        raise DataError(
            f"{source}: no images found; expect class sub-folders (optionally under Training/Testing) "
            "or a CSV with columns path,label"
        )
    return dataset


def _from_bids(root: Path, query: BidsQuery) -> Dataset:
    root = root.resolve()
    images, problems = bids_images(root, query)
    return Dataset(root, [Item(im.path, im.label, im.subject) for im in images], "bids", [], problems)


def _hidden(name: str) -> bool:
    return name.startswith((".", "__")) or name in ("Thumbs.db", "desktop.ini")


def _visible_children(
    folder: Path, root: Path, ignored: list[str], problems: list[dict], ancestors: frozenset[Path]
) -> list[Path]:
    """Children of ``folder`` to list: not hidden (those go to ``ignored``), no directory symlink not to follow.

    ``ancestors`` holds the real paths of the folders walked down to ``folder``, itself included.
    """
    children = []
    for child in sorted(folder.iterdir()):
        rel = child.relative_to(root).as_posix()
        if _hidden(child.name):
            ignored.append(rel)
        elif child.is_symlink() and child.is_dir() and (reason := _unfollowed_link(child, root, ancestors)):
            problems.append({"path": rel, "reason": reason})
        else:
            children.append(child)
    return children


def _unfollowed_link(link: Path, root: Path, ancestors: frozenset[Path]) -> str | None:
    """Why the directory symlink ``link`` is not followed, or None to follow it (it leads out of the dataset)."""
    target = link.resolve()
    if target in ancestors or root.is_relative_to(target):
        return f"directory symlink to {target}, a folder that contains the link (a loop); not followed, remove the link"
    if target.is_relative_to(root):
        return (
            f"directory symlink to {target.relative_to(root).as_posix()}, inside the dataset; not followed, so its "
            "images are not listed twice under another class; remove the link"
        )
    return None


def _from_folder(root: Path) -> Dataset:
    root = root.resolve()
    ignored: list[str] = []
    problems: list[dict] = []
    top = _visible_children(root, root, ignored, problems, frozenset({root}))
    top_dirs = [p for p in top if p.is_dir()]
    ignored += [p.relative_to(root).as_posix() for p in top if p.is_file()]
    split_dirs = [p for p in top_dirs if p.name.lower() in SPLIT_NAMES]
    if split_dirs:
        ignored += [p.relative_to(root).as_posix() for p in top_dirs if p not in split_dirs]
        layout = [(SPLIT_NAMES[p.name.lower()], p) for p in split_dirs]
    else:
        layout = [(None, root)]
    items: list[Item] = []
    for split, base in layout:
        ancestors = frozenset({root, base.resolve()})
        entries = top if base == root else _visible_children(base, root, ignored, problems, ancestors)
        for class_dir in (p for p in entries if p.is_dir()):
            files = _files_below(class_dir, root, ignored, problems, ancestors)
            if not files:
                problems.append(
                    {
                        "path": class_dir.relative_to(root).as_posix(),
                        "reason": "empty class folder; add images or remove the folder",
                    }
                )
            items += [Item(f, class_dir.name, None, split) for f in files]
        if base != root:
            ignored += [p.relative_to(root).as_posix() for p in entries if p.is_file()]
    return Dataset(root, items, "folder", sorted(ignored), problems)


def _files_below(
    folder: Path, root: Path, ignored: list[str], problems: list[dict], ancestors: frozenset[Path]
) -> list[Path]:
    """Every non-hidden file below ``folder`` (class folders may nest, e.g. one per subject).

    The slices of a DICOM series are one item, the series
    (:func:`~brainmri.data.dicom.series_items`).

    A file symlink that loops or points nowhere is kept: reading it reports why it is unusable.
    """
    ancestors = ancestors | {folder.resolve()}
    files, below = [], []
    for child in _visible_children(folder, root, ignored, problems, ancestors):
        if child.is_dir():
            below += _files_below(child, root, ignored, problems, ancestors)
        else:
            files.append(child)
    return series_items(folder, files) + below


def _from_csv(path: Path, allow_outside: bool) -> Dataset:
    root = path.resolve().parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}; saved as Latin-1 or "
            f"Windows-1252?); convert it, e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}-utf8.csv"
        ) from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV manifest ({exc})") from None
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise DataError(
            f"{path}: CSV manifest lacks column(s) {', '.join(missing)}; "
            f"found {columns or 'no header'}, expected path,label[,subject][,split][,source]"
        )
    listed: dict[Path, list[tuple[int, Item]]] = {}
    problems: list[dict] = []
    for line, row in enumerate(rows, start=2):
        if None in row:  # csv.DictReader puts fields beyond the header under the key None
            problems.append(
                {
                    "path": f"{path.name}:{line}",
                    "reason": f"row has more fields than the header ({len(columns)}); quote paths that contain commas",
                }
            )
            continue
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row["path"] or not row["label"]:
            problems.append(
                {
                    "path": f"{path.name}:{line}",
                    "reason": "row with an empty path or label; fill it in or delete the row",
                }
            )
            continue
        split = row.get("split") or None
        if split is not None:
            if split.lower() not in SPLIT_NAMES:
                raise DataError(f"{path}:{line}: unknown split '{split}'; use one of train, val, test")
            split = SPLIT_NAMES[split.lower()]
        file = Path(os.path.normpath(root / row["path"]))  # lexical: symlinks may lead anywhere, '..' may not
        if not allow_outside and not file.is_relative_to(root):
            problems.append(
                {
                    "path": row["path"],
                    "reason": f"listed in {path.name} line {line} but outside the CSV's folder; "
                    "move the CSV to a folder above its images, or allow such paths with --allow-outside-paths",
                }
            )
            continue
        reason = _why_not_an_item(file)
        if reason:
            problems.append({"path": row["path"], "reason": f"listed in {path.name} line {line}{reason}"})
            continue
        item = Item(file, row["label"], row.get("subject") or None, split, row.get("source") or None)
        listed.setdefault(file, []).append((line, item))
    kept = _one_row_per_file(listed, root, path.name, problems)
    items = [it for _, it in kept]
    if "split" in columns:
        blank = [line for line, it in kept if it.split is None]
        if blank and len(blank) < len(items):
            problems.append(
                {
                    "path": path.name,
                    "reason": f"{len(blank)} row(s) with a blank split ({_lines(blank)}): --split "
                    "official uses them neither for training nor for testing; fill in train or test",
                }
            )
    return Dataset(root, items, "csv", [], problems)


def _why_not_an_item(path: Path) -> str | None:
    """Why a CSV row's ``path`` is not an item (``": reason"``), or None: a file, or a DICOM series.

    A series is a folder holding one, or ``folder/<SeriesInstanceUID>`` (:func:`~brainmri.data.dicom.find_series`).
    """
    if path.is_file():
        return None
    try:
        if find_series(path) is not None:
            return None
    except DataError as exc:  # a folder of several series: the row must name one
        return ": " + str(exc).removeprefix(f"{path}: ")
    problem = file_problem(path) if path.exists() or path.is_symlink() else None
    return f": {problem}" if problem else " but the file does not exist; fix the path (relative to the CSV)"


def _one_row_per_file(
    listed: dict[Path, list[tuple[int, Item]]], root: Path, name: str, problems: list[dict]
) -> list[tuple[int, Item]]:
    """``(line, item)`` once per file: repeated identical rows are dropped, files listed with conflicting values skipped."""
    kept, repeated = [], []
    for file, rows in listed.items():
        if len({it for _, it in rows}) == 1:
            kept.append(rows[0])
            repeated += [line for line, _ in rows[1:]]
            continue
        fields = [f for f in ("label", "subject", "split", "source") if len({getattr(it, f) for _, it in rows}) > 1]
        detail = "; ".join(
            f"line {line}: " + ", ".join(f"{f} {getattr(it, f) or '(blank)'}" for f in fields) for line, it in rows
        )
        problems.append(
            {
                "path": os.path.relpath(file, root),
                "reason": f"listed {len(rows)} times with conflicting "
                f"{'/'.join(fields)} ({detail}); all its rows were skipped, keep one row per file",
            }
        )
    if repeated:
        problems.append(
            {
                "path": name,
                "reason": f"{len(repeated)} row(s) repeating an earlier row ({_lines(repeated)}) "
                "were dropped; each file counts once",
            }
        )
    return kept


def _lines(lines: list[int], shown: int = 10) -> str:
    """``lines 3, 5, 8`` (the first ``shown`` of them)."""
    more = f" and {len(lines) - shown} more" if len(lines) > shown else ""
    return "line" + "s" * (len(lines) > 1) + " " + ", ".join(map(str, sorted(lines)[:shown])) + more
