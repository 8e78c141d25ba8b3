"""The benchmark report's attribution overlays: the most confident right and wrong calls of each class."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from brainmri.data.preprocess import Preprocess
from brainmri.explain.examples import pick_examples
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig

pytest.importorskip("captum")

CLASSES = ["a", "b", "c"]


def test_the_most_confident_right_and_wrong_call_of_each_class_is_picked():
    y = np.array(["a", "a", "a", "b", "b", "c"])
    proba = np.array(
        [
            [0.6, 0.3, 0.1],  # a, right
            [0.9, 0.05, 0.05],  # a, right, more confident
            [0.2, 0.7, 0.1],  # a called b: wrong
            [0.1, 0.8, 0.1],  # b, right
            [0.1, 0.2, 0.7],  # b called c: wrong
            [0.1, 0.1, 0.8],
        ]
    )  # c, right; c has no wrong call
    assert pick_examples(y, proba, CLASSES) == [(1, True), (2, False), (3, True), (4, False), (5, True)]
    assert pick_examples(y, proba, CLASSES, per_class=2)[:3] == [(1, True), (0, True), (2, False)]


@pytest.fixture(scope="module")
def explained_run(tmp_path_factory):
    """A 2-fold benchmark of a tiny ayadi-cnn and glcm-svm on demo data whose tumours are planted at known places."""
    from brainmri.data.synthetic import write_demo_data

    root = tmp_path_factory.mktemp("examples")
    data = write_demo_data(root / "data", n=6, seed=0, size=64)
    params = {"ayadi-cnn": {"size": 32, "width": 4, "epochs": 2, "batch_size": 8, "threads": 1}}
    config = BenchmarkConfig(
        data=str(data),
        methods=("ayadi-cnn", "glcm-svm"),
        cv=2,
        n_boot=20,
        preprocess=Preprocess(size=32),
        params=params,
    )
    out = root / "out"
    return out, run_benchmark(config, out, n_jobs=1, device="cpu")


def test_the_report_shows_where_each_method_looked_on_right_and_wrong_calls(explained_run):
    out, results = explained_run
    units = {
        m: json.loads(sorted((out / "units" / m).glob("*.json"))[0].read_text()) for m in ("ayadi-cnn", "glcm-svm")
    }
    for method, attribution in (("ayadi-cnn", "gradcam"), ("glcm-svm", "occlusion")):
        captions = results["methods"][method]["explanations"]
        pictures = units[method]["explanations"]
        assert [p["caption"] for p in pictures] == captions
        # One right call per class at most, one wrong call per class at most, each naming its image and label.
        right = [c for c in captions if ": correct: " in c]
        wrong = [c for c in captions if ": wrong: " in c]
        assert 1 <= len(right) <= 4 and len(wrong) <= 4 and len(right) + len(wrong) == len(captions)
        assert all(c.split("/")[0] in c.split(": ")[2] for c in captions)  # the class folder is the label
        assert all(c.endswith(f"({attribution})") for c in captions)
        image = Image.open(io.BytesIO(base64.b64decode(pictures[0]["png"])))
        assert image.size[0] >= 256 and image.mode == "RGB"
        pixels = np.asarray(image)[24:]  # below the title
        assert (np.ptp(pixels, axis=2) > 40).mean() > 0.01  # the map is drawn in colour over the grayscale image
    report = (out / "report.html").read_text()
    assert report.count("Where the method looked") == 2
    assert all(f"<figcaption>{c}</figcaption>" in report for m in units for c in results["methods"][m]["explanations"])
