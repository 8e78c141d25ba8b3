"""``report.html``: one self-contained, escaped HTML page from the benchmark results."""

from __future__ import annotations

import html
import json
import re

import pytest

from brainmri.report.html import render_report, write_report


@pytest.fixture(scope="module")
def cv_report(make_benchmark):
    """Read-only: the results of a 5-fold benchmark of three methods and their report."""
    results, predictions = make_benchmark(split="cv")
    return results, render_report(results, predictions)


@pytest.fixture(scope="module")
def official_report(make_benchmark):
    """Read-only: the same on an official split, with deduplicated metrics."""
    results, predictions = make_benchmark(split="official")
    return results, render_report(results, predictions)


def _text(page: str) -> str:
    """The page without tags and entities, whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_report_names_every_method_and_has_its_sections(cv_report):
    results, page = cv_report
    assert page.startswith("<!DOCTYPE html>")
    for name in results["methods"]:
        assert f">{name}</h3>" in page
    for section in ("protocol", "results", "pairwise", "dataset", "audit", "config"):
        assert f'id="{section}"' in page
    assert "Created 2026-11-26T12:00:00Z with brainmri 0.1.0" in _text(page)


def test_report_shows_protocol_notes_prominently(cv_report):
    results, page = cv_report
    note = results["protocol"]["notes"][0]
    assert re.search(r'<div class="callout"><strong>Read before the numbers:</strong><ul><li>' + re.escape(note), page)
    text = _text(page)
    assert "subject ids known no" in text
    assert "grouping duplicates" in text and "groups 374" in text


def test_report_shows_leakage(cv_report):
    _, page = cv_report
    text = _text(page)
    assert "Leakage: 551 held-out items duplicate a training item" in text
    assert "test/pituitary: 395 of 405" in text
    assert "test pituitary 395 405 97.5%" in text
    assert "largest cluster 28" in text


def test_comparison_table_formats_metrics_with_intervals_and_bolds_the_best(make_benchmark):
    results, predictions = make_benchmark()
    results["methods"]["glcm-svm"]["metrics"]["accuracy"] = {"value": 0.9534, "ci_low": 0.9412, "ci_high": 0.9641}
    results["methods"]["wavelet-knn"]["metrics"]["auc"] = {"value": float("nan"), "ci_low": None, "ci_high": None}
    page = render_report(results, predictions)
    assert "<th>balanced accuracy</th>" in page and "<th>macro F1</th>" in page
    assert "<strong>0.953 [0.941, 0.964]</strong>" in page
    assert "n/a" in page
    assert "accuracy (deduplicated test)" not in page
    assert "percentage points" not in page


def test_report_states_the_deduplicated_accuracy_gap(official_report):
    results, page = official_report
    assert "<th>accuracy (deduplicated test)</th>" in page
    text = _text(page)
    for name, m in results["methods"].items():
        full = m["metrics"]["accuracy"]["value"]
        clean = m["metrics_deduplicated"]["accuracy"]["value"]
        assert f"{name} {full:.3f} on all test items, {clean:.3f} without them: a gap of 7.0 percentage points" in text
    assert "notumor 395" in text  # dropped duplicates per class
    assert "glioma tumor" in text  # label map


def test_pairwise_comparisons(cv_report):
    _, page = cv_report
    text = _text(page)
    assert "McNemar n01" in text and "adjusted p" in text
    assert (
        "Significant differences at α = 0.05 after adjustment for multiple comparisons: "
        "glcm-svm vs multifeature-rf (adjusted p < 0.001); glcm-svm vs wavelet-knn (adjusted p 0.020)." in text
    )


def test_pairwise_comparisons_without_significant_pair(make_benchmark):
    results, predictions = make_benchmark(methods={"a": 0.8, "b": 0.8})
    results["comparisons"][0].update(significant=False, p_adjusted=0.4)
    assert "No pair of methods differs significantly at α = 0.05" in _text(render_report(results, predictions))


def test_dataset_counts_per_split_and_external_test_data(make_benchmark):
    results, predictions = make_benchmark(methods={"a": 0.8}, split="official")
    results["dataset"]["test_data"] = {"path": "/other/site", "n_items": 7, "counts": {"glioma": 3, "notumor": 4}}
    text = _text(render_report(results, predictions))
    assert "class train test external test" in text
    assert "glioma 30 30 3" in text and "meningioma 30 30 0" in text
    assert "total 120 120 7" in text
    assert "/other/site" in text
    assert "No pairwise comparison" in text


def test_per_method_details(cv_report):
    results, page = cv_report
    text = _text(page)
    assert "Reference: Doe J., Roe R. (2013) A study of glcm-svm." in text
    assert "C 100" in text and "kernel rbf" in text
    assert "Defaults of the method." in text  # the methods without params
    assert "fold fold0" not in text and "fold0" in text
    assert re.search(r"<em>mean</em></td>", page)
    glioma = results["methods"]["glcm-svm"]["per_class"]["glioma"]
    assert f"glioma {glioma['sensitivity']:.3f} 0.950 {glioma['precision']:.3f} 0.900 30 " in text


def test_report_is_self_contained(cv_report):
    results, page = cv_report
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == 1 + 2 * len(results["methods"])  # chart, then a confusion matrix and ROC per method
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src in images)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "url(" not in page
    without_references = page
    for m in results["methods"].values():
        without_references = without_references.replace(html.escape(m["reference"]), "")
    assert "http://" not in without_references and "https://" not in without_references
    assert "https://" in page  # the references themselves are kept


def test_report_escapes_strings_from_the_data(make_benchmark):
    evil = "<script>alert(1)</script>"
    results, predictions = make_benchmark(methods={evil: 0.8, "ok": 0.7}, classes=["glioma", '<img src=x onerror="y">'])
    results["protocol"]["notes"].append("note with <b>markup</b> & ampersand")
    page = render_report(results, predictions)
    assert "<script" not in page and "<img src=x" not in page and "<b>markup" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;y&quot;&gt;" in page
    assert "note with &lt;b&gt;markup&lt;/b&gt; &amp; ampersand" in page


def test_config_is_repeated_as_json(official_report):
    results, page = official_report
    block = re.search(r"<pre>(.*?)</pre>", page, re.S).group(1)
    assert json.loads(html.unescape(block)) == results["config"]


def test_write_report(make_benchmark, tmp_path, listing):
    results, predictions = make_benchmark(methods={"glcm-svm": 0.9})
    path = write_report(results, predictions, tmp_path / "out")
    assert path == tmp_path / "out" / "report.html"
    assert list(listing(tmp_path / "out")) == ["report.html"]  # no temporary file left
    assert path.read_text(encoding="utf-8") == render_report(results, predictions)
