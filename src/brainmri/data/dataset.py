"""Datasets: the one manifest object every brainmri feature works on.

A :class:`Dataset` is a list of :class:`Item` (path, label, optional subject
and split) plus what was ignored or found wrong while listing it. It comes
from

* a folder of class sub-folders, optionally below split folders
  (``Training/Testing``, ``train/val/test``, matched case-insensitively), or
* a CSV manifest with columns ``path,label[,subject][,split]``, the paths
  relative to the CSV file.

Listing never decodes images; unreadable files are found by the readers and
reported by the batch job that reads them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainmri.errors import DataError

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
    """

    path: Path
    label: str
    subject: str | None = None
    split: str | None = None


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
        ``"folder"`` or ``"csv"``.
    ignored : list of str
        Hidden files and folders, and files outside any class folder, that
        were not taken as items (relative paths).
    problems : list of dict
        ``{path, reason}`` for what could not be used (empty class folders,
        CSV rows naming missing files).
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


def load_dataset(source: str | Path) -> Dataset:
    """List a dataset from a folder or a CSV manifest.

    Parameters
    ----------
    source : str or Path
        A folder of class sub-folders (optionally under split folders) or a
        ``.csv`` manifest.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        The path does not exist, the CSV lacks a required column, or no
        image was found at all.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder; pass a dataset folder or a CSV manifest")
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise DataError(f"{source}: a dataset is a folder of class sub-folders or a .csv manifest, not a {source.suffix or 'plain'} file")
        dataset = _from_csv(source)
    else:
        dataset = _from_folder(source)
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


def _hidden(name: str) -> bool:
    return name.startswith((".", "__")) or name in ("Thumbs.db", "desktop.ini")


def _visible_children(folder: Path, root: Path, ignored: list[str]) -> list[Path]:
    children = []
    for child in sorted(folder.iterdir()):
        if _hidden(child.name):
            ignored.append(child.relative_to(root).as_posix())
        else:
            children.append(child)
    return children


def _from_folder(root: Path) -> Dataset:
    root = root.resolve()
    ignored: list[str] = []
    problems: list[dict] = []
    top = _visible_children(root, root, ignored)
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
        entries = top if base == root else _visible_children(base, root, ignored)
        for class_dir in (p for p in entries if p.is_dir()):
            files = _files_below(class_dir, root, ignored)
            if not files:
                problems.append({
                    "path": class_dir.relative_to(root).as_posix(),
                    "reason": "empty class folder; add images or remove the folder",
                })
            items += [Item(f, class_dir.name, None, split) for f in files]
        if base != root:
            ignored += [p.relative_to(root).as_posix() for p in entries if p.is_file()]
    return Dataset(root, items, "folder", sorted(ignored), problems)


def _files_below(folder: Path, root: Path, ignored: list[str]) -> list[Path]:
    """Every non-hidden file below ``folder`` (class folders may nest, e.g. one per subject)."""
    files = []
    for child in _visible_children(folder, root, ignored):
        files += _files_below(child, root, ignored) if child.is_dir() else [child]
    return files


def _from_csv(path: Path) -> Dataset:
    root = path.resolve().parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV manifest ({exc})") from None
    missing = [c for c in ("path", "label") if c not in columns]
    if missing:
        raise DataError(
            f"{path}: CSV manifest lacks column(s) {', '.join(missing)}; "
            f"found {columns or 'no header'}, expected path,label[,subject][,split]"
        )
    items: list[Item] = []
    problems: list[dict] = []
    for line, row in enumerate(rows, start=2):
        if None in row:  # csv.DictReader puts fields beyond the header under the key None
            problems.append({"path": f"{path.name}:{line}", "reason": f"row has more fields than the header ({len(columns)}); quote paths that contain commas"})
            continue
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not row["path"] or not row["label"]:
            problems.append({"path": f"{path.name}:{line}", "reason": "row with an empty path or label; fill it in or delete the row"})
            continue
        split = row.get("split") or None
        if split is not None:
            if split.lower() not in SPLIT_NAMES:
                raise DataError(f"{path}:{line}: unknown split '{split}'; use one of train, val, test")
            split = SPLIT_NAMES[split.lower()]
        file = (root / row["path"]).resolve()
        if not file.is_file():
            problems.append({"path": row["path"], "reason": f"listed in {path.name} line {line} but the file does not exist; fix the path (relative to the CSV)"})
            continue
        items.append(Item(file, row["label"], row.get("subject") or None, split))
    return Dataset(root, items, "csv", [], problems)
