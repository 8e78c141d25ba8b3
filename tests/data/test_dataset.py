"""Datasets from class folders (optionally under split folders) and from CSV manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainmri.data.dataset import Item, load_dataset
from brainmri.errors import DataError


def _touch(root: Path, *names: str) -> None:
    """Create empty files (listing never decodes, so content does not matter)."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def test_class_folders(demo_source):
    ds = load_dataset(demo_source)
    assert ds.source == "folder"
    assert ds.root == demo_source.resolve()
    assert len(ds) == 24
    assert ds.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert ds.counts() == {"all": {c: 6 for c in ds.classes}}
    assert ds.splits == [] and not ds.has_subjects
    assert ds.ignored == [] and ds.problems == []
    first = ds.items[0]
    assert first == Item(demo_source.resolve() / "glioma" / "glioma_0000.png", "glioma", None, None)
    assert ds.relpath(first) == "glioma/glioma_0000.png"
    assert list(ds.labels[:7]) == ["glioma"] * 6 + ["meningioma"]


@pytest.mark.parametrize(
    "train_name, test_name",
    [("Training", "Testing"), ("train", "test"), ("TRAIN", "Test"), ("training", "validation")],
)
def test_split_folders_match_case_insensitively(tmp_path, train_name, test_name):
    _touch(tmp_path, f"{train_name}/a/1.png", f"{train_name}/b/2.png", f"{test_name}/a/3.png", f"{test_name}/b/4.png")
    ds = load_dataset(tmp_path)
    expected_test = "val" if test_name == "validation" else "test"
    assert ds.splits == sorted(["train", expected_test])
    assert ds.counts() == {expected_test: {"a": 1, "b": 1}, "train": {"a": 1, "b": 1}}
    assert {ds.relpath(it): it.split for it in ds.items}[f"{test_name}/a/3.png"] == expected_test


def test_train_val_test_folders(tmp_path):
    _touch(tmp_path, "train/a/1.png", "val/a/2.png", "test/a/3.png")
    assert load_dataset(tmp_path).splits == ["test", "train", "val"]


def test_hidden_entries_are_never_items_or_classes_and_are_counted_as_ignored(tmp_path):
    _touch(
        tmp_path,
        "Training/a/1.png",
        "Training/a/.DS_Store",
        "Training/b/2.png",
        "Testing/a/3.png",
        "Testing/b/4.png",
        "Testing/b/.ipynb_checkpoints/4-checkpoint.png",
        "Testing/.ipynb_checkpoints/x.png",
        ".git/config",
        "__MACOSX/a/1.png",
        "Training/a/Thumbs.db",
    )
    ds = load_dataset(tmp_path)
    assert sorted(ds.relpath(it) for it in ds.items) == [
        "Testing/a/3.png",
        "Testing/b/4.png",
        "Training/a/1.png",
        "Training/b/2.png",
    ]
    assert ds.classes == ["a", "b"]
    assert ds.ignored == [
        ".git",
        "Testing/.ipynb_checkpoints",
        "Testing/b/.ipynb_checkpoints",
        "Training/a/.DS_Store",
        "Training/a/Thumbs.db",
        "__MACOSX",
    ]


def test_files_outside_class_folders_and_extra_top_folders_are_ignored(tmp_path):
    _touch(tmp_path, "Training/a/1.png", "Training/stray.png", "Testing/a/2.png", "README.txt", "extras/a/9.png")
    ds = load_dataset(tmp_path)
    assert len(ds) == 2
    assert ds.ignored == ["README.txt", "Training/stray.png", "extras"]


def test_class_folders_may_nest_one_folder_per_subject(tmp_path):
    _touch(tmp_path, "a/subject1/1.png", "a/subject1/2.png", "b/subject2/3.png")
    ds = load_dataset(tmp_path)
    assert ds.counts() == {"all": {"a": 2, "b": 1}}


def test_empty_class_folder_is_a_problem_not_a_class(tmp_path):
    _touch(tmp_path, "a/1.png", "empty/.DS_Store")
    ds = load_dataset(tmp_path)
    assert ds.classes == ["a"]
    assert ds.problems == [{"path": "empty", "reason": "empty class folder; add images or remove the folder"}]
    assert ds.ignored == ["empty/.DS_Store"]


def test_subset_keeps_root_and_items(demo_source):
    ds = load_dataset(demo_source)
    sub = ds.subset([0, 23])
    assert sub.root == ds.root and sub.source == "folder"
    assert sub.items == [ds.items[0], ds.items[23]]


# ---------------------------------------------------------------- CSV manifests


def test_csv_manifest_paths_relative_to_the_csv_leading_out_of_its_folder_when_allowed(tmp_path):
    _touch(tmp_path, "img/s1_a.png", "img/s1_b.png", "img/s2_a.png")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "Path, Label ,Subject,Split\n"
        "../img/s1_a.png,tumour,s1,Training\n"
        "../img/s1_b.png,tumour,s1,train\n"
        "../img/s2_a.png,healthy,s2,TEST\n"
    )
    ds = load_dataset(manifest, allow_outside=True)
    assert ds.source == "csv"
    assert ds.root == manifest.parent.resolve()
    assert ds.items[0] == Item((tmp_path / "img/s1_a.png").resolve(), "tumour", "s1", "train")
    assert [it.split for it in ds.items] == ["train", "train", "test"]
    assert ds.has_subjects
    assert ds.counts() == {"test": {"healthy": 1}, "train": {"tumour": 2}}


def test_csv_minimal_columns_and_utf8_bom(tmp_path):
    _touch(tmp_path, "x.png")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffpath,label\nx.png,a\n".encode("utf-8"))
    ds = load_dataset(manifest)
    assert [(ds.relpath(it), it.label, it.subject, it.split) for it in ds.items] == [("x.png", "a", None, None)]


def test_csv_rows_that_cannot_be_used_are_reported_and_skipped(tmp_path):
    _touch(tmp_path, "ok.png", "ok2.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nok.png,a\nmissing.png,a\n,a\nimg,with,comma.png,a\nok2.png,b\n")
    ds = load_dataset(manifest)
    assert [ds.relpath(it) for it in ds.items] == ["ok.png", "ok2.png"]
    assert ds.problems == [
        {
            "path": "missing.png",
            "reason": "listed in m.csv line 3 but the file does not exist; fix the path (relative to the CSV)",
        },
        {"path": "m.csv:4", "reason": "row with an empty path or label; fill it in or delete the row"},
        {"path": "m.csv:5", "reason": "row has more fields than the header (2); quote paths that contain commas"},
    ]


@pytest.mark.parametrize(
    "layout, source, message",
    [
        ({}, "nowhere", r"nowhere: no such file or folder; pass a dataset folder or a CSV manifest"),
        (
            {"notes.txt": ""},
            "notes.txt",
            r"notes\.txt: a dataset is a folder of class sub-folders or a \.csv manifest, not a \.txt file",
        ),
        ({"x/": None}, "x", r"x: no images found; expect class sub-folders .*or a CSV with columns path,label"),
        ({"x/a/.DS_Store": ""}, "x", r"x: no usable images; a: empty class folder; add images or remove the folder$"),
        (
            {"x/a/": None, "x/b/": None},
            "x",
            r"x: no usable images; a: empty class folder.* \(and 1 more problem\(s\) like it\)",
        ),
        (
            {"m.csv": "file,label\nx.png,a\n"},
            "m.csv",
            r"m\.csv: CSV manifest lacks column\(s\) path; found \['file', 'label'\], expected path,label\[,subject\]\[,split\]",
        ),
        ({"m.csv": "path,class\n"}, "m.csv", r"m\.csv: CSV manifest lacks column\(s\) label"),
        ({"m.csv": ""}, "m.csv", r"m\.csv: CSV manifest lacks column\(s\) path, label; found no header"),
        (
            {"m.csv": "path,label,split\nx.png,a,holdout\n", "x.png": ""},
            "m.csv",
            r"m\.csv:2: unknown split 'holdout'; use one of train, val, test",
        ),
        (
            {"m.csv": "path,label\ngone.png,a\n"},
            "m.csv",
            r"m\.csv: no usable images; gone\.png: listed in m\.csv line 2 but the file does not exist; fix the path",
        ),
        (
            {"m.csv": b"path,label\n\xff\xfe,a\n"},
            "m.csv",
            r"m\.csv: not UTF-8 text \(byte 0xff at offset 11; saved as Latin-1 or Windows-1252\?\); "
            r"convert it, e\.g\. iconv -f latin1 -t utf-8 m\.csv > m-utf8\.csv$",
        ),
    ],
    ids=[
        "missing",
        "not-csv",
        "empty-folder",
        "only-empty-class",
        "two-empty-classes",
        "csv-missing-path-column",
        "csv-missing-label-column",
        "csv-empty",
        "csv-bad-split",
        "csv-missing-file",
        "csv-not-utf8",
    ],
)
def test_load_dataset_rejects(tmp_path, monkeypatch, layout, source, message):
    for name, content in layout.items():
        path = tmp_path / name
        if content is None:
            path.mkdir(parents=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=message):
        load_dataset(source)
