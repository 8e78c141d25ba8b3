"""The versions of the code behind a number: brainmri, the preprocessing, the OOD score and every extractor.

Results, run folders, bundles and caches record them; a change of any of
them means features, units or bundles computed before are not reused.
"""

from __future__ import annotations

from brainmri.data.duplicates import DUPLICATES_VERSION
from brainmri.data.preprocess import Preprocess
from brainmri.features import EXTRACTORS
from brainmri.robust.ood import OOD_VERSION
from brainmri.version import __version__


def code_versions() -> dict:
    """Versions of the code behind a benchmark's numbers: brainmri, preprocessing, OOD score, duplicates, extractors.

    Recorded in ``results.json`` and part of :meth:`BenchmarkConfig.fingerprint`,
    so that a run folder is never resumed with units computed by other code.
    The preprocessing and extractor versions are also in the feature cache key.
    """
    return {
        "brainmri": __version__,
        "preprocess": Preprocess.version,
        "ood": OOD_VERSION,
        "duplicates": DUPLICATES_VERSION,
        "extractors": {cls.__name__: cls.version for cls in EXTRACTORS},
    }


def flat_versions(versions: dict) -> dict:
    """``versions`` with the extractors' versions beside the others, one level (to compare two records)."""
    return {**{k: v for k, v in versions.items() if k != "extractors"}, **versions.get("extractors", {})}
