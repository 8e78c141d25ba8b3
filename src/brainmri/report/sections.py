"""The run-level sections of the benchmark report (protocol, dataset, audit) and what every section shares.

Each section returns an HTML fragment from the ``results`` of a benchmark;
:func:`brainmri.report.html.render_report` puts them in order, and the tuning
report reuses the protocol of the test of the best configuration. The helpers
here (:func:`method_anchor`, :func:`intervals`, :func:`preprocessing_text`)
serve the other section modules too: the comparison of the methods
(:mod:`brainmri.report.comparison_sections`), their robustness
(:mod:`brainmri.report.robustness_sections`) and the section of each method
(:mod:`brainmri.report.method_sections`).
"""

from __future__ import annotations

import re

from brainmri.data.copy_kinds import format_kinds
from brainmri.evaluation.metrics import interval_statement
from brainmri.evaluation.shortcuts import MARGIN
from brainmri.report.parts import escape_html, key_values, number, table, yes_no


def method_anchor(name: str, index: int) -> str:
    """The HTML id of the section of method ``name``, the ``index``-th of the run (unique, safe in a URL)."""
    return f"method-{index}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def _count(x) -> int | None:
    """An audit count given as a number, or as the list of what it counts."""
    if isinstance(x, (list, tuple)):
        return len(x)
    return x


def intervals(results: dict) -> str:
    """How the confidence intervals were computed (every method is scored on the same test items)."""
    bootstrap = next((m["bootstrap"] for m in results["methods"].values() if m.get("bootstrap")), None)
    if bootstrap:
        return escape_html(interval_statement(bootstrap))
    n_boot = results.get("config", {}).get("n_boot")
    return f"95% percentile bootstrap, {number(n_boot)} resamples (whether over items or groups is not recorded in these results)"


def preprocessing_text(settings: dict) -> str:
    """The preprocessing of a run in words (``results.json`` omits the later settings at their defaults)."""
    parts = ["crop to the head" if settings.get("crop", True) else "no crop"]
    if settings.get("canonical"):
        parts.insert(0, "canonical decoding (8-bit grey, one JPEG quantisation)")
    if settings.get("keep_aspect"):
        parts.append("padded to a square")
    if settings.get("size"):
        parts.append(f"{settings['size']} px")
    if settings.get("n4"):
        parts.append("N4 bias-field correction")
    harmonise = settings.get("harmonise", "none")
    parts.append(
        {
            "zscore": "z-scored in the head",
            "nyul": "Nyúl histogram standardisation (landmarks learned on each training split)",
        }.get(harmonise, "no harmonisation")
    )
    return ", ".join(parts)


def protocol_section(results: dict) -> str:
    p = results.get("protocol", {})
    parts = ['<h2 id="protocol">Protocol</h2>']
    notes = p.get("notes") or []
    if notes:
        parts.append(
            '<div class="callout"><strong>Read before the numbers:</strong><ul>'
            + "".join(f"<li>{escape_html(n)}</li>" for n in notes)
            + "</ul></div>"
        )
    dropped = p.get("dropped_duplicates") or {}
    parts.append(
        key_values(
            [
                ("evaluation", escape_html(p.get("kind", "n/a"))),
                ("folds", number(p.get("folds"))),
                ("grouping", escape_html(p.get("grouping", "n/a"))),
                ("groups", number(p.get("n_groups"))),
                ("confidence intervals", intervals(results)),
                ("subject ids known", yes_no(p.get("subjects_known"))),
                ("test duplicates dropped", str(sum(dropped.values())) if dropped else "none"),
                ("label map", "see below" if p.get("label_map") else "none (classes as found)"),
            ]
        )
    )
    if dropped:
        parts.append("<h3>Test items dropped as duplicates of training items</h3>")
        parts.append(table(["class", "dropped"], [[escape_html(c), number(n)] for c, n in dropped.items()]))
    if p.get("cross_dataset_leaks"):
        parts.append(_cross_dataset_leaks(p["cross_dataset_leaks"]))
    for test_set in p.get("test_sets", []):  # several --test-data collections
        parts.append(_cross_dataset_leaks(test_set["cross_dataset_leaks"], test_set["name"]))
    if p.get("label_map"):
        parts.append("<h3>Label map</h3>")
        parts.append(
            table(
                ["class in the data", "class used"],
                [[escape_html(a), escape_html(b)] for a, b in p["label_map"].items()],
                numeric_from=2,
            )
        )
    return "".join(parts)


def _cross_dataset_leaks(block: dict, name: str | None = None) -> str:
    """External test items (of the collection ``name``, when there are several) that copy a training image: a
    callout, counts per class and the pairs."""
    n, of = block.get("n_leaking", 0), block.get("n_other", 0)
    of_what = f" ({escape_html(name)})" if name else ""
    parts = [f"<h3>Copies of training images in the external test data{of_what}</h3>"]
    if not n:
        parts.append(f"<p>None of the {number(of)} external test items copies a training image.</p>")
        return "".join(parts)
    parts.append(
        f'<div class="callout alert"><strong>{number(n)} of the {number(of)} external test items copy a training image'
        "</strong> (perceptual hash and structure correlation, after decoding and resizing). A score on them "
        "measures memorisation, not generalisation.</div>"
    )
    rows = [
        [
            escape_html(c),
            number(v["leaking"]),
            number(v["of"]),
            escape_html(", ".join(f"{k} {m}" for k, m in v["matches"].items())),
        ]
        for c, v in block.get("per_class", {}).items()
    ]
    parts.append(table(["external class", "copies", "of", "training classes copied"], rows))
    if block.get("kinds"):  # absent from results written before copies had kinds
        parts.append(f"<p>Kinds of copy: {escape_html(format_kinds(block['kinds']))}.</p>")
    pairs = [
        [
            escape_html(x["other_path"]),
            escape_html(x["data_path"]),
            escape_html(x.get("kind", "identical" if x["exact"] else "")),
            number(x["similarity"]),
        ]
        for x in block.get("pairs", [])
    ]
    parts.append(
        "<details><summary>Every copy and its closest training image</summary>"
        + table(["external item", "training image", "kind of copy", "structure correlation"], pairs, numeric_from=3)
        + "</details>"
    )
    return "".join(parts)


def _split_counts(counts: dict) -> dict[str, dict]:
    """``{class: n}`` or ``{split: {class: n}}`` as the latter."""
    if counts and all(isinstance(v, dict) for v in counts.values()):
        return counts
    return {"all": counts}


def dataset_section(results: dict) -> str:
    d = results.get("dataset", {})
    columns = dict(_split_counts(d.get("counts", {})))
    external = d.get("test_data")
    externals = external if isinstance(external, list) else [external] if external else []  # several: a list
    for e in externals:
        test = f"external test {e['name']}" if "name" in e else "external test"
        for split, per in _split_counts(e.get("counts", {})).items():
            columns[f"{test} {split}" if split != "all" else test] = per
    classes = list(dict.fromkeys([*d.get("classes", []), *(c for per in columns.values() for c in per)]))
    rows = [[escape_html(c)] + [number(per.get(c, 0)) for per in columns.values()] for c in classes]
    rows.append(["<strong>total</strong>"] + [f"<strong>{sum(per.values())}</strong>" for per in columns.values()])
    parts = [
        '<h2 id="dataset">Dataset</h2>',
        f"<p><code>{escape_html(d.get('path', 'n/a'))}</code>: {number(d.get('n_items'))} items, {len(classes)} classes.</p>",
    ]
    for e in externals:
        parts.append(
            f"<p>External test data: <code>{escape_html(e.get('path', 'n/a'))}</code>, "
            f"{number(e.get('n_items'))} items.</p>"
        )
    parts.append(table(["class"] + [escape_html(s) for s in columns], rows))
    return "".join(parts)


def _leak_consequence(protocol: dict) -> str:
    """What the cross-split leaks mean for the scores of this run."""
    kind, grouping = protocol.get("kind"), protocol.get("grouping")
    if kind == "official":
        return "Scores on the official test set overstate how a method does on unseen images."
    if grouping in (None, "none"):
        return (
            f"This run ({escape_html(kind)}) does not group items, so duplicates can also fall on both sides of a fold."
        )
    return (
        f"This run ({escape_html(kind)}) does not use that split; it keeps each group ({escape_html(grouping)}) on one "
        "side of every fold."
    )


def audit_section(results: dict) -> str:
    a = results.get("audit")
    parts = ['<h2 id="audit">Audit</h2>']
    if not a:
        parts.append("<p>No audit in these results.</p>")
        return "".join(parts)
    leaks = _count(a.get("cross_split_leaks")) or 0
    per_split = a.get("leaks_per_class") or {}
    if leaks:
        worst = [
            f"{escape_html(split)}/{escape_html(cls)}: {v['leaking']} of {v['of']}"
            for split, per in per_split.items()
            for cls, v in per.items()
        ]
        parts.append(
            f'<div class="callout alert"><strong>Leakage: {leaks} held-out items duplicate a training item</strong>'
            + (f" ({'; '.join(worst)})" if worst else "")
            + f". {_leak_consequence(results.get('protocol', {}))}</div>"
        )
    parts.append(
        key_values(
            [
                ("unreadable files", number(_count(a.get("n_unreadable")))),
                ("exact-duplicate clusters", number(_count(a.get("exact_duplicate_clusters")))),
                (
                    "images in exact-duplicate clusters",
                    number(a.get("exact_duplicate_images", a.get("n_exact_duplicate_images"))),
                ),
                ("near-duplicate clusters", number(_count(a.get("near_duplicate_clusters")))),
                (
                    "images in near-duplicate clusters",
                    number(a.get("near_duplicate_images", a.get("n_near_duplicate_images"))),
                ),
                ("largest cluster", number(a.get("largest_cluster_size"))),
                ("clusters with conflicting labels", number(_count(a.get("conflicting_label_clusters")))),
                ("held-out items duplicating a training item", number(leaks)),
            ]
        )
    )
    if per_split:
        rows = [
            [
                escape_html(split),
                escape_html(cls),
                number(v["leaking"]),
                number(v["of"]),
                f"{100 * v['leaking'] / v['of']:.1f}%" if v["of"] else "n/a",
            ]
            for split, per in per_split.items()
            for cls, v in per.items()
        ]
        parts.append("<h3>Cross-split leaks per class</h3>")
        parts.append(table(["split", "class", "leaking items", "of", "share"], rows, numeric_from=2))
    if a.get("copy_kinds"):  # absent from results written before copies had kinds
        parts.append(_copy_kinds(a["copy_kinds"], a.get("leak_kinds") or {}))
    if a.get("shortcuts"):
        parts.append(shortcuts_part(a["shortcuts"]))
    return "".join(parts)


def shortcuts_part(block: dict) -> str:
    """The shortcut audit: a warning when labels follow from what is not anatomy, the scores, the per-class shares."""
    if "skipped" in block:
        return f"<h3>Shortcuts</h3><p>Shortcut audit skipped: {escape_html(block['skipped'])}.</p>"
    chance = block["chance"]
    parts = ["<h3>Shortcuts: what predicts the label without anatomy</h3>"]
    if block["flagged"]:
        parts.append(
            '<div class="callout alert"><strong>Shortcut risk: the labels follow from '
            f"{escape_html(', '.join(block['flagged']))}.</strong> {escape_html(block['verdict'])}</div>"
        )
    parts.append(
        f"<p>A random forest predicts the label from each group of properties alone, by grouped "
        f"{block['folds']}-fold cross-validation ({escape_html(block['grouping'])}); chance is a balanced accuracy of "
        f"{chance['balanced_accuracy']:.3f}. A group is flagged when its interval lies more than {MARGIN:.2f} above "
        "chance. "
        "The estimated contrast is never flagged by itself: lesions move it too. After Zech et al. (2018) and "
        "DeGrave et al. (2021).</p>"
    )
    rows = []
    for name, s in block["sets"].items():
        ba = s["balanced_accuracy"]
        verdict = "shortcut" if name in block["flagged"] else ("informational" if s["informational"] else "")
        rows.append(
            [
                escape_html(name),
                f"{ba['value']:.3f} [{ba['ci_low']:.3f}, {ba['ci_high']:.3f}]",
                f"{s['accuracy']['value']:.3f}",
                escape_html(", ".join(t["property"] for t in s["top_properties"][:3])),
                verdict,
            ]
        )
    parts.append(table(["properties", "balanced accuracy [95% CI]", "accuracy", "carried by", ""], rows))
    for prop, info in block["by_class"].items():
        cells = [
            [escape_html(c), escape_html(", ".join(f"{v} {share:.0%}" for v, share in shares.items()))]
            for c, shares in info["shares"].items()
        ]
        parts.append(f"<p>{escape_html(prop)} by class (Cramér's V {info['cramers_v']:.2f}):</p>")
        parts.append(table(["class", "commonest values"], cells))
    return "".join(parts)


def _copy_kinds(pairs: dict[str, int], leaks: dict[str, dict[str, int]]) -> str:
    """The kinds of copy: confirmed pairs per kind, and held-out items per kind of their closest training copy."""
    splits = list(leaks)
    rows = [
        [escape_html(kind), number(n)] + [number(leaks[split].get(kind, 0)) for split in splits]
        for kind, n in pairs.items()
    ]
    return (
        "<h3>Kinds of copy</h3><p>Each confirmed pair of copies is named by what separates them: identical "
        "pixels, re-encoded (resized or re-saved, same intensities), re-processed (another margin, zoom, shift or "
        "contrast), or mirrored, flipped or rotated. Pairs are counted inside the whole dataset; held-out items "
        "by their closest training copy.</p>"
        + table(
            ["kind", "pairs"] + [f"{split} items copying a training item" for split in splits], rows, numeric_from=1
        )
    )
