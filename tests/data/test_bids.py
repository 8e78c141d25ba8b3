"""BIDS datasets as DATA: one suffix's images, labelled from participants.tsv, subjects kept together."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bids")

from brainmri.cli import main
from brainmri.data.bids import BidsQuery
from brainmri.data.dataset import load_dataset
from brainmri.data.splits import group_labels
from brainmri.errors import ConfigError, DataError


def write_bids(root: Path, write_nifti, participants: dict[str, str], images: list[str], shape=(20, 22, 18)) -> Path:
    """A BIDS tree: ``dataset_description.json``, ``participants.tsv`` (``diagnosis``, ``age``) and the NIfTI
    ``images`` (paths below ``root``), each a volume of its own."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.8.0"}))
    rows = ["participant_id\tage\tdiagnosis"] + [f"{sub}\t40\t{label}" for sub, label in participants.items()]
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    for k, image in enumerate(images):
        volume = np.random.default_rng(k).random(shape).astype(np.float32)
        volume[4:12, 5:14, 3:11] += 2
        write_nifti(root / image, volume)
    return root


@pytest.fixture
def bids_root(tmp_path, write_nifti) -> Path:
    return write_bids(
        tmp_path / "ds",
        write_nifti,
        {"sub-01": "AD", "sub-02": "CN", "sub-03": "n/a", "sub-05": "AD"},
        [
            "sub-01/anat/sub-01_T1w.nii.gz",
            "sub-01/anat/sub-01_T2w.nii.gz",
            "sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz",
            "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz",
            "sub-02/ses-2/anat/sub-02_ses-2_T1w.nii.gz",
            "sub-03/anat/sub-03_T1w.nii.gz",
            "sub-04/anat/sub-04_T1w.nii.gz",
            "sub-05/anat/sub-05_T1w.nii",
            "derivatives/fmriprep/sub-01/anat/sub-01_desc-preproc_T1w.nii.gz",
        ],
    )


def test_a_bids_dataset_lists_one_suffix_with_labels_from_participants_and_subjects_as_groups(bids_root):
    dataset = load_dataset(bids_root, bids=BidsQuery("diagnosis"))

    listed = {dataset.relpath(it): (it.label, it.subject) for it in dataset.items}
    assert listed == {
        "sub-01/anat/sub-01_T1w.nii.gz": ("AD", "sub-01"),
        "sub-02/ses-1/anat/sub-02_ses-1_run-1_T1w.nii.gz": ("CN", "sub-02"),
        "sub-02/ses-1/anat/sub-02_ses-1_run-2_T1w.nii.gz": ("CN", "sub-02"),
        "sub-02/ses-2/anat/sub-02_ses-2_T1w.nii.gz": ("CN", "sub-02"),
        "sub-05/anat/sub-05_T1w.nii": ("AD", "sub-05"),
    }
    assert dataset.source == "bids" and dataset.has_subjects
    reasons = {p["path"]: p["reason"] for p in dataset.problems}
    assert reasons == {
        "sub-04/anat/sub-04_T1w.nii.gz": "its subject is not in participants.tsv; add a row for it, or remove it",
        "sub-03": "participants.tsv gives no diagnosis (blank or n/a); its 1 image(s) were skipped",
    }
    t2 = load_dataset(bids_root, bids=BidsQuery("diagnosis", "T2w"))
    assert [t2.relpath(it) for it in t2.items] == ["sub-01/anat/sub-01_T2w.nii.gz"]


@pytest.mark.parametrize(
    "label, suffix, error, message",
    [
        (
            None,
            "T1w",
            DataError,
            r"a BIDS dataset \(dataset_description.json\); name the participants.tsv column "
            r"that holds the class with --bids-label COLUMN \(its columns: participant_id, age, diagnosis\)",
        ),
        ("dx", "T1w", DataError, r"participants.tsv: no column 'dx' \(columns: participant_id, age, diagnosis\)"),
        ("diagnosis", "FLAIR", DataError, r"no NIfTI images with the BIDS suffix FLAIR \(found: .*T1w"),
        ("diagnosis", "T1w/../x", ConfigError, r"--bids-suffix must be a BIDS suffix"),
    ],
)
def test_what_a_bids_dataset_lacks_is_one_line_naming_the_option(bids_root, label, suffix, error, message):
    with pytest.raises(error, match=message):
        load_dataset(bids_root, bids=BidsQuery(label, suffix))


def test_bids_options_on_a_dataset_that_is_not_bids_are_refused(demo_source):
    with pytest.raises(ConfigError, match=r"--bids-label diagnosis is for a BIDS dataset .* drop the option"):
        load_dataset(demo_source, bids=BidsQuery("diagnosis"))


def test_two_sessions_of_one_subject_never_straddle_a_split(bids_root):
    dataset = load_dataset(bids_root, bids=BidsQuery("diagnosis"))
    from brainmri.data.audit import analyse

    groups, _ = group_labels(analyse(dataset, n_jobs=1), "auto")
    by_subject = {}
    for item, group in zip(dataset.items, groups, strict=True):
        by_subject.setdefault(item.subject, set()).add(group)
    assert all(len(g) == 1 for g in by_subject.values())
    assert len(set(groups)) == 3


def test_audit_reads_a_bids_dataset_and_writes_nothing_into_it(bids_root, tmp_path, listing):
    before = listing(bids_root)
    out = tmp_path / "audit"
    assert main(["audit", str(bids_root), "--bids-label", "diagnosis", "--out", str(out), "--jobs", "1", "-q"]) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["n_items"] == 5 and report["n_unreadable"] == 0
    assert listing(bids_root) == before
