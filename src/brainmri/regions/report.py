"""The report of ``brainmri regions``: one self-contained HTML page.

Built from the benchmark report's parts (:mod:`brainmri.report.html`: CSS,
tables, inline PNG figures, escaping) so that both pages read alike:
the summary (mask vs whole-brain accuracy, the planted regions when known),
the search's fitness per generation, the selected regions drawn on the three
planes through their centre, the ranked regions and the configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from brainmri.files import write_text
from brainmri.report.charts import figure_png, new_figure
from brainmri.report.parts import CSS, escape_html, image, key_values, number, table


def history_figure(history: list[dict]):
    """Best and mean fitness, and the best mask's accuracy, per generation."""
    fig = new_figure(6.0, 3.2)
    ax = fig.add_subplot()
    gens = [h["generation"] for h in history]
    ax.plot(gens, [h["best_fitness"] for h in history], label="best fitness")
    ax.plot(gens, [h["mean_fitness"] for h in history], label="mean fitness", linestyle="--")
    ax.plot(gens, [h["best_accuracy"] for h in history], label="accuracy of the best mask", linestyle=":")
    ax.set_xlabel("generation")
    ax.set_ylabel("grouped CV accuracy / fitness")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def mask_figure(mean: np.ndarray, mask: np.ndarray):
    """The mean volume on the three planes through the mask's centre, the selected regions in colour."""
    fig = new_figure(7.5, 2.8)
    centre = [int(round(c.mean())) for c in np.nonzero(mask)] if mask.any() else [s // 2 for s in mask.shape]
    for axis, name in enumerate(("sagittal", "coronal", "axial")):
        ax = fig.add_subplot(1, 3, axis + 1)
        ax.imshow(np.take(mean, centre[axis], axis=axis).T, cmap="gray", origin="lower")
        ax.imshow(
            np.ma.masked_equal(np.take(mask, centre[axis], axis=axis).T, 0),
            cmap="autumn",
            alpha=0.6,
            origin="lower",
            vmin=0,
            vmax=1,
        )
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    return fig


def render_regions_report(results: dict, ranked: list[dict], mean: np.ndarray, mask: np.ndarray) -> str:
    """The page as a string: inline CSS and PNGs, no script, every string from the data escaped."""
    acc = results["accuracy"]
    skipped = f" ({len(results['skipped'])} skipped)" if results["skipped"] else ""
    summary = [
        ("data", escape_html(results["data"])),
        ("volumes", number(results["n_volumes"]) + skipped),
        ("classes", escape_html(", ".join(results["classes"]))),
        ("regions", f"{results['atlas']['n_regions']} from {escape_html(results['atlas']['source'])}"),
        ("selected regions", escape_html(", ".join(map(str, results["selected_regions"])) or "none")),
        ("accuracy with the mask", number(acc["mask"])),
        ("accuracy of the whole brain", number(acc["whole_brain"])),
        ("validation", escape_html(results["cv"])),
        ("fitness", escape_html(results["fitness"])),
        ("classifier", escape_html(results["classifier"])),
        ("attribution (seeds the search)", escape_html(results["attribution"])),
    ]
    notes = [f"<p>{escape_html(acc['note'])}.</p>"]
    if results["atlas"]["note"]:
        notes.append(f"<p>{escape_html(results['atlas']['note'])}.</p>")
    planted = results.get("planted")
    if planted and planted["comparable"]:
        summary.append(("planted regions (known answer)", escape_html(", ".join(map(str, planted["planted_regions"])))))
        summary.append(
            (f"planted among the top {len(planted['planted_regions'])} ranked", f"{planted['recovered_top']:.0%}")
        )
        summary.append(("planted regions selected", f"{planted['recovered_selected']:.0%}"))
    elif planted:
        notes.append(f"<p>Planted regions not compared: {escape_html(planted['note'])}.</p>")
    rows = [
        [
            number(r["rank"]),
            number(r["region"]),
            "yes" if r["selected"] else "",
            number(r["attribution"]),
            number(r["population_share"]),
            number(r["voxels"]),
            f"{r['inside_brain']:.0%}",
        ]
        for r in ranked
    ]
    body = [
        f'<h1>brainmri region search</h1><p class="meta">{escape_html(results["created"])}</p>',
        "<h2>Summary</h2>",
        key_values(summary),
        *notes,
        "<h2>Search</h2>",
        image(
            figure_png(history_figure(results["history"])),
            "fitness per generation",
            f"{results['n_evaluations']} distinct masks scored",
        ),
        "<h2>Selected regions</h2>",
        image(figure_png(mask_figure(mean, mask)), "selected regions on the mean volume"),
        "<h2>Ranked regions</h2>",
        table(
            ["rank", "region", "selected", "attribution", "share of last generation", "voxels", "inside brain"],
            rows,
            numeric_from=0,
        ),
        "<h2>Configuration</h2>",
        f"<pre>{escape_html(json.dumps(results['config'], indent=2))}</pre>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>brainmri region search ({escape_html(results['created'])})</title>\n<style>{CSS}</style>\n"
        "</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_regions_report(
    results: dict, ranked: list[dict], mean: np.ndarray, mask: np.ndarray, path: str | Path
) -> Path:
    """Write :func:`render_regions_report` to ``path`` atomically."""
    return write_text(path, render_regions_report(results, ranked, mean, mask))
