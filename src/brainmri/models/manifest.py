"""A bundle's ``manifest.json``: its layout constants, and the checks of a bundle folder against it.

The manifest says what a bundle is (format and versions, the libraries it
was trained with) and gives the sha256 of every other file. Before a bundle
is loaded, :func:`read_manifest` checks its format version, brainmri major
version and preprocessing/extractor versions against this installation's,
and :func:`verify_files` every file's sha256; before ``brainmri train``
replaces a folder, :func:`replaceable_bundle` checks that it is an
untouched bundle. Writing and loading bundles is
:mod:`brainmri.models.bundle`'s.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

from brainmri.errors import DataError
from brainmri.files import sha256
from brainmri.models.versions import code_versions
from brainmri.version import __version__

#: Version of the bundle layout; a bundle of another version is refused.
FORMAT_VERSION = 1
#: The manifest's file name in the bundle folder.
MANIFEST = "manifest.json"
#: The ``format`` field of every bundle manifest.
BUNDLE_FORMAT = "brainmri model bundle"
#: Libraries whose versions a manifest records (those installed).
LIBRARIES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "scikit-image",
    "Pillow",
    "PyWavelets",
    "skops",
    "torch",
    "torchvision",
    "safetensors",
    "scikit-fuzzy",
)


def library_versions() -> dict[str, str]:
    """Python and the installed :data:`LIBRARIES`, by name."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def replaceable_bundle(folder: Path) -> str | None:
    """Why the folder is not a bundle that brainmri may replace, or None when it is one.

    A bundle is replaceable when its ``manifest.json`` is a brainmri bundle
    manifest (its ``format`` field), the folder holds that manifest and the
    files it lists and nothing else (a file someone added would be lost), and
    every listed file still has the sha256 the manifest gives.
    """
    path = folder / MANIFEST
    if not path.is_file() or path.is_symlink():
        return f"an existing folder that is not a brainmri bundle (no {MANIFEST})"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        manifest = None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != BUNDLE_FORMAT
        or not isinstance(files, dict)
        or not all(isinstance(name, str) and Path(name).name == name for name in files)
    ):
        return f"its {MANIFEST} is not a brainmri bundle manifest"
    foreign = sorted(set(os.listdir(folder)) - {MANIFEST, *files})
    if foreign:
        return (
            f"holds {', '.join(foreign[:3])}{' and more' if len(foreign) > 3 else ''}, which the bundle did not write"
        )
    for name, digest in files.items():
        file = folder / name
        if file.is_symlink() or not file.is_file() or sha256(file) != digest:
            return f"its file {name} is missing or differs from the bundle's manifest (changed since brainmri wrote it)"
    return None


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a bundle folder, checked to be one this brainmri can load.

    Raises
    ------
    DataError
        ``folder`` is not a bundle, its manifest is unreadable, or the bundle
        has another format version, brainmri major version or
        preprocessing/extractor versions.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder}: not a brainmri model bundle (no {MANIFEST}); train one with brainmri train")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        format_version, made_by = manifest["format_version"], str(manifest["brainmri_version"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: not a readable bundle manifest ({type(exc).__name__}: {exc}); train the bundle again"
        ) from None
    if format_version != FORMAT_VERSION:
        raise DataError(
            f"{path}: bundle format version {format_version}, this brainmri {__version__} reads version "
            f"{FORMAT_VERSION}; train the bundle again with this brainmri"
        )
    if made_by.split(".")[0] != __version__.split(".")[0]:
        raise DataError(
            f"{path}: bundle written by brainmri {made_by}, incompatible with brainmri {__version__} "
            f"(another major version); train it again, or install brainmri {made_by}"
        )

    now, then = code_versions(), manifest.get("versions", {})
    # Only the extractors the bundle's brainmri had are compared: one added since then cannot be in the bundle.
    was = then.get("extractors") if isinstance(then.get("extractors"), dict) else {}
    moved = (
        [f"preprocess {then.get('preprocess')} -> {now['preprocess']}"]
        if then.get("preprocess") != now["preprocess"]
        else []
    )
    moved += [
        f"{name} {version} -> {now['extractors'].get(name)}"
        for name, version in was.items()
        if now["extractors"].get(name) != version
    ]
    if not was:
        moved.append("no extractor versions recorded")
    if moved:
        raise DataError(
            f"{path}: made with other preprocessing or feature code ({'; '.join(moved)}), so its inputs "
            "would differ; train the bundle again with this brainmri"
        )
    return manifest


def verify_files(folder: str | Path, manifest: dict) -> None:
    """Check every file the manifest lists against its sha256.

    Raises
    ------
    DataError
        A file is missing, or its content differs from what was written
        (tampered with, truncated or damaged); the message names it.
    """
    folder = Path(folder)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise DataError(f"{folder / MANIFEST}: lists no model files; train the bundle again")
    for name, digest in files.items():
        path = folder / name
        if Path(name).name != name:
            raise DataError(
                f"{folder / MANIFEST}: file name {name!r} leads out of the bundle folder; the manifest is not brainmri's"
            )
        if not path.is_file():
            raise DataError(f"{path}: missing from the bundle; copy the whole folder, or train it again")
        if sha256(path) != digest:
            raise DataError(
                f"{path}: sha256 differs from the manifest (the file was changed, truncated or damaged); "
                "copy the bundle again, or train it again"
            )
