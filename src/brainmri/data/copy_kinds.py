"""What kind of copy a confirmed duplicate pair is: identical, re-encoded, re-processed, mirrored, flipped, rotated.

:func:`~brainmri.data.duplicates.confirm` names each pair it confirms;
``audit`` counts them (``copy_kinds``, ``leak_kinds``), and so do the
benchmark's protocol block and report.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from brainmri.data.fingerprint import ORIENTATIONS, Fingerprint

#: The kinds of copy, in the order they are reported.
KINDS = ("identical", "re-encoded", "re-processed", "mirrored", "flipped", "rotated", "rotated and mirrored")


_ORIENTATION_KIND = {
    "mirrored": "mirrored",
    "flipped": "flipped",
    "rotated 90": "rotated",
    "rotated 180": "rotated",
    "rotated 270": "rotated",
    "transposed": "rotated and mirrored",
    "anti-transposed": "rotated and mirrored",
}


#: Largest RMS difference of the tone thumbnails, as a share of the image's range, of a re-encoded copy.
REENCODED_TONE = 0.03


def copy_kinds(queries: list[Fingerprint], base: list[Fingerprint], pairs: dict[str, np.ndarray]) -> np.ndarray:
    """What kind of copy each confirmed, non-identical pair is (one of :data:`KINDS`).

    A copy in another orientation is named by it (a quarter or half turn
    is "rotated"). An upright copy is "re-encoded" (resized or re-saved)
    when its whole frame has the same intensities (tone thumbnails within
    :data:`REENCODED_TONE` of the range), and "re-processed" when they
    differ: it was re-framed (another margin, zoom or shift, which moves
    the frame's content) or its intensities changed (contrast, gamma,
    filtering).
    """
    kinds = np.empty(len(pairs["i"]), dtype=object)
    for k, (i, j, g) in enumerate(zip(pairs["i"], pairs["j"], pairs["orientation"], strict=True)):
        if g:
            kinds[k] = _ORIENTATION_KIND[ORIENTATIONS[g][0]]
            continue
        a, b = queries[i].tones[0], base[j].tones[0]
        span = float(max(a.max() - a.min(), b.max() - b.min())) or 1.0
        same_tone = float(np.sqrt(np.mean((a - b) ** 2))) <= REENCODED_TONE * span
        kinds[k] = "re-encoded" if same_tone else "re-processed"
    return kinds


def kind_counts(kinds) -> dict[str, int]:
    """How many pairs of each kind, in the order of :data:`KINDS`, kinds with none left out."""
    counts = Counter(str(k) for k in kinds)
    return {k: counts[k] for k in KINDS if counts[k]}


def format_kinds(counts: dict[str, int]) -> str:
    """``{"mirrored": 437, "flipped": 12}`` as ``"mirrored 437, flipped 12"``."""
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "none"
