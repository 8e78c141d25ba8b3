"""The shortcut audit: labels that follow from the export or the background are flagged; anatomy alone is not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from brainmri.data.audit import analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.synthetic import synthetic_slice
from brainmri.evaluation.shortcuts import format_shortcuts, measure_files, shortcut_study
from brainmri.features.provenance import NAMES, file_properties

N = 36  # images per class: enough groups for 5 folds and a narrow enough interval


def _write(root, *, export=None, marker=False, seed=0):
    """Two classes whose images differ by a lesion; ``export`` and ``marker`` add a difference that is not anatomy.

    ``export``: tumour images saved as RGB JPEG (quality 70), the others as grayscale PNG. ``marker``: a bright square
    in the top-left corner of every tumour image, outside the head.
    """
    rng = np.random.default_rng(seed)
    for label, source in (("notumor", "notumor"), ("tumour", "glioma")):
        (root / label).mkdir(parents=True)
        for k in range(N):
            image = (synthetic_slice(source, rng, 96) * 255).astype(np.uint8)
            if marker and label == "tumour":
                image[2:10, 2:10] = 255
            if export and label == "tumour":
                Image.fromarray(image).convert("RGB").save(root / label / f"{k:03d}.jpg", quality=70)
            else:
                Image.fromarray(image).save(root / label / f"{k:03d}.png")
    return root


def _study(root, seed=0):
    analysis = analyse(load_dataset(root), n_jobs=1)
    props = measure_files([it.path for it in analysis.dataset.items], n_jobs=1)
    return shortcut_study(props, analysis.dataset.labels.astype(str), analysis.similar_groups, seed=seed, n_jobs=1)


def test_labels_that_follow_from_anatomy_alone_are_not_flagged(tmp_path):
    block = _study(_write(tmp_path / "d"))
    assert block["flagged"] == []
    assert block["verdict"].startswith("no shortcut found")
    assert block["sets"]["file metadata"]["balanced_accuracy"]["value"] < 0.65
    assert not block["sets"]["contrast"]["flagged"]  # informational: never flagged, however well it scores


def test_a_class_exported_differently_is_flagged_by_its_file_metadata(tmp_path):
    block = _study(_write(tmp_path / "d", export=True))
    assert "file metadata" in block["flagged"]
    assert block["sets"]["file metadata"]["balanced_accuracy"]["ci_low"] > 0.6
    assert block["by_class"]["mode"]["shares"]["tumour"] == {"RGB": 1.0}
    assert block["by_class"]["format"]["shares"]["notumor"] == {"png": 1.0}
    lines = "\n".join(format_shortcuts(block))
    assert "file metadata" in lines and "SHORTCUT" in lines


def test_a_marker_outside_the_head_is_flagged_by_the_background(tmp_path):
    block = _study(_write(tmp_path / "d", marker=True))
    assert "background" in block["flagged"]
    assert "file metadata" not in block["flagged"]
    assert block["sets"]["background"]["top_properties"][0]["property"] in (
        "background thumbnail",
        "border_mean",
        "bright_background_share",
    )


def test_same_seed_same_figures(tmp_path):
    root = _write(tmp_path / "d", export=True)
    assert json.dumps(_study(root, seed=3)) == json.dumps(_study(root, seed=3))


def test_the_head_is_hidden_from_the_background_thumbnail(tmp_path):
    # The same noisy background around a small and a large head: the background thumbnails agree, while a thumbnail
    # with the heads blacked out would show their outlines.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    for name, radius in (("small.png", 14), ("large.png", 38)):
        image = rng.normal(30, 4, (96, 96))
        image[np.hypot(yy - 48, xx - 48) < radius] = 200
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(tmp_path / name)
    thumbs = [file_properties(tmp_path / n).values[NAMES.index("bg_pixel_0") :] for n in ("small.png", "large.png")]
    assert np.abs(thumbs[0] - thumbs[1]).max() < 0.03


def test_too_few_groups_are_skipped_with_a_reason():
    block = shortcut_study([None, None], ["a", "b"], [0, 1])
    assert "skipped" in block
    assert format_shortcuts(block)[0].startswith("shortcut audit skipped")


@pytest.mark.parametrize("bad", ["notanimage.png"])
def test_an_unreadable_file_is_left_out(tmp_path, bad):
    (tmp_path / bad).write_bytes(b"not an image")
    assert measure_files([tmp_path / bad], n_jobs=1) == [None]


def test_the_benchmark_warns_of_a_shortcut_in_its_results_report_and_terminal(tmp_path):
    from brainmri.data.preprocess import Preprocess
    from brainmri.report.terminal import format_results
    from brainmri.runs.benchmark import run_benchmark
    from brainmri.runs.config import BenchmarkConfig

    data = _write(tmp_path / "d", export=True)
    base = dict(data=str(data), methods=("rf",), cv=3, n_boot=20, preprocess=Preprocess(size=64))
    results = run_benchmark(BenchmarkConfig(**base, shortcuts="on"), tmp_path / "out", n_jobs=1, cache_dir=None)
    block = results["audit"]["shortcuts"]
    assert "file metadata" in block["flagged"]
    assert json.loads((tmp_path / "out/audit.json").read_text())["shortcuts"]["flagged"] == block["flagged"]
    html = (tmp_path / "out/report.html").read_text()
    assert "Shortcut risk: the labels follow from file metadata" in html
    assert "shortcut risk: the labels follow from what is not anatomy" in format_results(results)
    # auto: below 500 images the audit is not run, and the results say nothing of it
    quiet = run_benchmark(BenchmarkConfig(**base), tmp_path / "out2", n_jobs=1, cache_dir=None)
    assert "shortcuts" not in quiet["audit"]


def test_audit_shortcuts_on_the_command_line(tmp_path, capsys):
    from brainmri.cli import main

    data = _write(tmp_path / "d", marker=True)
    argv = ["audit", str(data), "--shortcuts", "--out", str(tmp_path / "a"), "-q", "--jobs", "1", "--seed", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "shortcut audit: the label predicted from what is not anatomy" in out
    assert "background" in json.loads((tmp_path / "a/audit.json").read_text())["shortcuts"]["flagged"]
