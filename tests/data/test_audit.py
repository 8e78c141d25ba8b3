"""``audit``: the audit.json document, unreadable files, duplicates and cross-split leaks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from brainmri.data.audit import (
    AUDIT_KEYS,
    analyse,
    audit_report,
    cross_dataset_leaks,
    cross_split_leaks,
    format_audit,
    format_cross_dataset_leaks,
)
from brainmri.data.dataset import load_dataset
from brainmri.data.duplicates import DuplicateParams
from brainmri.files import write_json


@pytest.fixture
def messy_data(demo_data, write_pil, load_gray):
    """The demo dataset plus duplicates, a label conflict, unreadable and hidden files.

    * ``glioma/copy.png``: exact copy of ``glioma/glioma_0000.png``;
    * ``meningioma/brighter.png``: brightness/contrast change of ``meningioma/meningioma_0002.png``;
    * ``pituitary/relabelled.png``: exact copy of ``notumor/notumor_0003.png`` (conflicting labels);
    * ``notumor/cut.jpg`` (truncated) and ``notumor/notes.txt``: unreadable;
    * ``glioma/.DS_Store`` and ``.ipynb_checkpoints/``: hidden.
    """
    shutil.copy(demo_data / "glioma/glioma_0000.png", demo_data / "glioma/copy.png")
    brighter = np.clip(load_gray(demo_data / "meningioma/meningioma_0002.png") * 0.8 + 30, 0, 255).astype(np.uint8)
    write_pil(demo_data / "meningioma/brighter.png", brighter)
    shutil.copy(demo_data / "notumor/notumor_0003.png", demo_data / "pituitary/relabelled.png")
    cut = write_pil(demo_data / "notumor/cut.jpg", load_gray(demo_data / "notumor/notumor_0000.png"))
    cut.write_bytes(cut.read_bytes()[:300])
    (demo_data / "notumor/notes.txt").write_text("scanner notes")
    (demo_data / "glioma/.DS_Store").write_bytes(b"\x00\x01")
    (demo_data / ".ipynb_checkpoints").mkdir()
    shutil.copy(demo_data / "glioma/glioma_0001.png", demo_data / ".ipynb_checkpoints/glioma_0001.png")
    return demo_data


def test_clean_demo_data_report(demo_source):
    analysis = analyse(load_dataset(demo_source), n_jobs=1)
    report = audit_report(analysis)
    assert set(AUDIT_KEYS) <= set(report)
    assert report["n_items"] == report["n_readable"] == 24
    assert report["n_unreadable"] == 0 and report["unreadable"] == []
    assert report["classes"] == {"glioma": 6, "meningioma": 6, "notumor": 6, "pituitary": 6}
    assert report["exact_duplicate_clusters"] == [] and report["near_duplicate_clusters"] == []
    assert report["conflicting_label_clusters"] == [] and report["cross_split_leaks"] == []
    assert report["largest_cluster_size"] == 1
    assert report["formats"] == {"png": 24} and report["sizes"] == {"64x64": 24}
    assert report["modes"] == {"L": 24} and report["bit_depths"] == {"8": 24}
    assert report["params"] == DuplicateParams().to_dict()
    assert report["subjects"] is None
    json.dumps(report)  # plain JSON types only


def test_messy_data_report(messy_data):
    calls = []
    analysis = analyse(load_dataset(messy_data), n_jobs=1, progress=calls.append)
    report = audit_report(analysis)
    assert sum(calls) == 29
    assert report["n_items"] == 29 and report["n_readable"] == 27 and report["n_unreadable"] == 2
    assert [u["path"] for u in report["unreadable"]] == ["notumor/cut.jpg", "notumor/notes.txt"]
    reasons = [u["reason"] for u in report["unreadable"]]
    assert reasons[0].startswith("cannot decode (") and reasons[0].endswith(
        "the file is truncated or corrupt, re-export or remove it"
    )
    assert reasons[1].startswith("not a supported image type (.txt)")
    assert report["ignored"] == [".ipynb_checkpoints", "glioma/.DS_Store"]
    assert report["classes"] == {"glioma": 7, "meningioma": 7, "notumor": 6, "pituitary": 7}
    assert report["exact_duplicate_clusters"] == [
        ["glioma/copy.png", "glioma/glioma_0000.png"],
        ["notumor/notumor_0003.png", "pituitary/relabelled.png"],
    ]
    assert report["near_duplicate_clusters"] == [["meningioma/brighter.png", "meningioma/meningioma_0002.png"]]
    assert report["conflicting_label_clusters"] == [
        {"paths": ["notumor/notumor_0003.png", "pituitary/relabelled.png"], "labels": ["notumor", "pituitary"]}
    ]
    assert report["largest_cluster_size"] == 2
    assert report["cross_split_leaks"] == []
    json.dumps(report)


def test_paths_in_report_are_relative_to_data(messy_data):
    report = audit_report(analyse(load_dataset(messy_data), n_jobs=1))
    paths = [p for c in report["exact_duplicate_clusters"] + report["near_duplicate_clusters"] for p in c]
    paths += [u["path"] for u in report["unreadable"]]
    assert paths and all(not p.startswith("/") and (messy_data / p).exists() for p in paths)


def test_audit_writes_nothing_into_the_input_folder(messy_data, tmp_path, listing):
    before = listing(messy_data)
    analysis = analyse(load_dataset(messy_data), n_jobs=2)
    report = audit_report(analysis)
    analysis.similar_groups  # noqa: B018 - the looser grouping reads nothing either
    write_json(tmp_path / "out" / "audit.json", report)
    assert listing(messy_data) == before


def test_cross_split_leaks(leaky_split):
    analysis = analyse(load_dataset(leaky_split), n_jobs=1)
    leaks = cross_split_leaks(analysis)
    assert [(x["test_path"], x["train_path"], x["exact"]) for x in leaks] == [
        ("Testing/glioma/copy_of_glioma_0000.png", "Training/glioma/glioma_0000.png", True),
        ("Testing/notumor/reencoded_notumor_0001.jpg", "Training/notumor/notumor_0001.png", False),
    ]
    exact, near = leaks
    assert exact["distance"] == 0 and exact["similarity"] == 1.0
    assert near["distance"] <= 8 and 0.9 <= near["similarity"] < 1.0
    assert (exact["label"], exact["train_label"], exact["split"]) == ("glioma", "glioma", "test")
    report = audit_report(analysis)
    assert report["cross_split_leaks"] == leaks
    assert report["leaks_per_class"] == {
        "test": {"glioma": {"leaking": 1, "of": 3}, "notumor": {"leaking": 1, "of": 3}}
    }
    assert report["splits"]["train"] == {"glioma": 4, "meningioma": 4, "notumor": 4, "pituitary": 4}
    assert report["formats"] == {"png": 25, "jpeg": 1}


def test_no_leaks_without_a_training_split(demo_source):
    assert cross_split_leaks(analyse(load_dataset(demo_source), n_jobs=1)) == []


def test_all_unreadable_gives_an_empty_but_valid_report(tmp_path):
    for name in ("a/1.png", "b/2.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("not a png")
    analysis = analyse(load_dataset(tmp_path), n_jobs=1)
    report = audit_report(analysis)
    assert len(analysis.dataset) == 0
    assert report["n_items"] == 2 and report["n_unreadable"] == 2 and report["classes"] == {}
    assert "unreadable: a/1.png: not a readable PNG image; re-export or remove it" in format_audit(report)


def test_looser_similar_groups_contain_the_duplicate_clusters(messy_data):
    analysis = analyse(load_dataset(messy_data), n_jobs=1)
    similar, strict = analysis.similar_groups, analysis.graph.cluster_of
    assert similar.shape == strict.shape == (27,)
    for label in np.unique(strict):
        assert len(np.unique(similar[strict == label])) == 1


def test_format_audit_summary(leaky_split):
    text = format_audit(audit_report(analyse(load_dataset(leaky_split), n_jobs=1)))
    lines = text.splitlines()
    assert lines[0] == f"dataset: {leaky_split.resolve()} (folder)"
    assert "items: 26  readable: 26  unreadable: 0  ignored (hidden or outside class folders): 0" in lines
    assert "subjects: not given (splits group by duplicate cluster instead)" in lines
    assert any(line.split() == ["glioma", "3", "4", "7"] for line in lines)
    assert "exact duplicates: 1 clusters, 2 images" in lines
    assert "cross-split leaks: 2 held-out items duplicate a training item" in lines
    assert "  test/notumor: 1 of 3" in lines


def test_custom_params_are_recorded(demo_source):
    params = DuplicateParams(hash_radius=4, near_threshold=0.95)
    report = audit_report(analyse(load_dataset(demo_source), params=params, n_jobs=1))
    assert report["params"]["hash_radius"] == 4 and report["params"]["near_threshold"] == 0.95


# ---------------------------------------------------------------- copies between two datasets


def _fresh_only(copies_elsewhere, tmp_path):
    other = shutil.copytree(copies_elsewhere, tmp_path / "fresh")
    for copy in other.rglob("copy_of_*"):
        copy.unlink()
    return other


def test_cross_dataset_leaks_catch_resized_reencoded_copies_per_class(demo_source, copies_elsewhere):
    block = cross_dataset_leaks(
        analyse(load_dataset(demo_source), n_jobs=1), analyse(load_dataset(copies_elsewhere), n_jobs=1)
    )
    assert (block["n_other"], block["n_leaking"]) == (16, 4)
    assert block["per_class"] == {
        "glioma": {"leaking": 1, "of": 4, "matches": {"glioma": 1}},
        "meningioma": {"leaking": 0, "of": 3, "matches": {}},
        "notumor": {"leaking": 2, "of": 5, "matches": {"notumor": 2}},
        "pituitary": {"leaking": 1, "of": 4, "matches": {"pituitary": 1}},
    }
    assert [(x["other_path"], x["data_path"], x["exact"]) for x in block["pairs"]] == [
        ("glioma/copy_of_glioma_0000.jpg", "glioma/glioma_0000.png", False),
        ("notumor/copy_of_notumor_0001.jpg", "notumor/notumor_0001.png", False),
        ("notumor/copy_of_notumor_0002.jpg", "notumor/notumor_0002.png", False),
        ("pituitary/copy_of_pituitary_0003.png", "pituitary/pituitary_0003.png", True),
    ]
    assert all(0.9 <= x["similarity"] < 1.0 and x["distance"] <= 8 for x in block["pairs"][:3])
    assert block["pairs"][3]["similarity"] == 1.0
    assert block["data"] == str(demo_source.resolve()) and block["other"] == str(copies_elsewhere.resolve())
    json.dumps(block)


def test_a_second_set_without_copies_reports_none(demo_source, copies_elsewhere, tmp_path):
    other = _fresh_only(copies_elsewhere, tmp_path)
    block = cross_dataset_leaks(analyse(load_dataset(demo_source), n_jobs=1), analyse(load_dataset(other), n_jobs=1))
    assert block["n_leaking"] == 0 and block["pairs"] == []
    assert {c: v["leaking"] for c, v in block["per_class"].items()} == dict.fromkeys(
        ("glioma", "meningioma", "notumor", "pituitary"), 0
    )
    assert format_cross_dataset_leaks(block) == [f"copies of DATA images in {other.resolve()}: none among its 12 items"]


def test_format_cross_dataset_leaks(demo_source, copies_elsewhere):
    block = cross_dataset_leaks(
        analyse(load_dataset(demo_source), n_jobs=1), analyse(load_dataset(copies_elsewhere), n_jobs=1)
    )
    assert format_cross_dataset_leaks(block) == [
        f"copies of DATA images in {copies_elsewhere.resolve()}: 4 of its 16 items",
        "  kinds: identical 1, re-encoded 3",
        "  glioma: 1 of 4 (copies of DATA glioma 1)",
        "  meningioma: 0 of 3",
        "  notumor: 2 of 5 (copies of DATA notumor 2)",
        "  pituitary: 1 of 4 (copies of DATA pituitary 1)",
    ]
