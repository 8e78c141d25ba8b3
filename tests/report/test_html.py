"""``report.html``: one self-contained, escaped HTML page from the benchmark results."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from brainmri.report.figures import render_figures
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
    """The page without tags and entities (inline tags vanish, others become a space), whitespace collapsed."""
    inline = re.sub(r"</?(?:span|strong|em|a|code)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", inline)))


class _Tables(HTMLParser):
    """Every table of a page as rows of cells; a cell is ``(text, bold)``."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: list[list[list[tuple[str, bool]]]] = []
        self.cell: list[str] | None = None
        self.bold = False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell, self.bold = [], False
        elif tag == "strong" and self.cell is not None:
            self.bold = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append((re.sub(r"\s+", " ", "".join(self.cell)).strip(), self.bold))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def _rows(page: str, first_header: str, after: str = "") -> list[dict[str, tuple[str, bool]]]:
    """The rows (column -> cell) of the first table after ``after`` whose first header is ``first_header``."""
    for table in _Tables(page[page.index(after) :]).tables:
        header = [text for text, _ in table[0]]
        if header[0] == first_header:
            return [dict(zip(header, row, strict=True)) for row in table[1:]]
    raise AssertionError(f"no table starting with {first_header!r}")


def _table(page: str, first_header: str, after: str = "") -> dict[str, dict[str, tuple[str, bool]]]:
    """As :func:`_rows`, keyed by the text of each row's first cell."""
    return {row[first_header][0]: row for row in _rows(page, first_header, after)}


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
    page = render_report(results, predictions, figures={})
    table = _table(page, "method", after='id="results"')
    assert list(table) == list(results["methods"])
    assert list(table["glcm-svm"]) == [
        "method",
        "accuracy",
        "balanced accuracy",
        "macro F1",
        "AUC",
        "sensitivity",
        "specificity",
        "precision",
        "Brier score",
        "ECE",
        "time (s)",
    ]
    assert table["glcm-svm"]["accuracy"] == ("0.953 [0.941, 0.964]", True)
    assert table["multifeature-rf"]["accuracy"][1] is False
    assert table["wavelet-knn"]["AUC"] == ("n/a", False)  # NaN, not a number and not the best
    assert table["glcm-svm"]["time (s)"] == ("13.500", False)
    assert "accuracy (deduplicated test)" not in page
    assert "Duplicate inflation" not in page


@pytest.mark.parametrize("metric", ["brier", "ece"])
def test_lower_is_better_for_brier_and_ece(make_benchmark, metric):
    results, predictions = make_benchmark()
    for name, value in zip(results["methods"], (0.3, 0.1, 0.2), strict=True):
        results["methods"][name]["metrics"][metric] = {"value": value, "ci_low": value - 0.01, "ci_high": value + 0.01}
    page = render_report(results, predictions, figures={})
    column = {"brier": "Brier score", "ece": "ECE"}[metric]
    cells = {name: row[column] for name, row in _table(page, "method", after='id="results"').items()}
    assert cells == {
        "glcm-svm": ("0.300 [0.290, 0.310]", False),
        "multifeature-rf": ("0.100 [0.090, 0.110]", True),
        "wavelet-knn": ("0.200 [0.190, 0.210]", False),
    }
    assert "the highest, or the lowest for Brier score, ECE (lower is better)" in _text(page)


def test_headline_table_fits_the_page(cv_report):
    _, page = cv_report
    results_section = page[page.index('id="results"') : page.index('id="pairwise"')]
    assert '<div class="table-wrap"><table>' in results_section
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", page)
    # each interval wraps onto a line of its own below its value, so the columns stay narrow
    assert re.search(r'0\.\d{3} <span class="ci">\[0\.\d{3}, [01]\.\d{3}\]</span>', results_section)
    assert re.search(r"\.ci \{[^}]*display: block", page)


@pytest.mark.parametrize(
    ("bootstrap", "statement"),
    [
        (
            {"unit": "groups", "n_units": 374, "groups": "near-duplicate clusters"},
            "95% percentile bootstrap, 1000 resamples, over 374 groups (near-duplicate clusters)",
        ),
        (
            {"unit": "groups", "n_units": 40, "groups": "subjects"},
            "95% percentile bootstrap, 1000 resamples, over 40 groups (subjects)",
        ),
        ({"unit": "items", "n_units": 120, "groups": None}, "95% percentile bootstrap, 1000 resamples, over 120 items"),
        (
            None,
            "95% percentile bootstrap, 200 resamples (whether over items or groups is not recorded in these results)",
        ),
    ],
    ids=["clusters", "subjects", "items", "old-results"],
)
def test_report_states_how_the_intervals_were_computed(make_benchmark, bootstrap, statement):
    results, predictions = make_benchmark(methods={"a": 0.9, "b": 0.7})
    results["config"]["n_boot"] = 200
    for m in results["methods"].values():
        if bootstrap is None:
            del m["bootstrap"]
        else:
            m["bootstrap"].update(bootstrap)
    text = _text(render_report(results, predictions, figures={}))
    assert f"confidence intervals {statement}" in text  # protocol section
    assert f"Each metric: value [95% confidence interval: {statement}]." in text  # under the headline table


def test_chart_caption_mentions_hatched_bars_only_when_there_are_some(cv_report, official_report):
    captions = {
        name: re.findall(r"<figcaption>(.*?)</figcaption>", page)[0]
        for name, (_, page) in (("cv", cv_report), ("official", official_report))
    }
    assert captions["cv"] == "Bars: point estimates; whiskers: 95% confidence intervals."
    assert captions["official"] == (
        "Bars: point estimates; whiskers: 95% confidence intervals. "
        "Hatched: accuracy on the test items that do not duplicate a training item."
    )


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


def test_report_says_which_test_part_lacks_a_class_and_of_which_methods(make_benchmark):
    # External test data without meningioma; its copy-free part also without notumor, for one method only.
    results, predictions = make_benchmark(methods={"a": 0.8, "b": 0.7}, split="official")
    for m in results["methods"].values():
        m.update(
            classes_absent=["meningioma"], classes_present=["glioma", "notumor", "pituitary"], metrics_undefined={}
        )
        m["per_class"]["meningioma"] = dict.fromkeys(("sensitivity", "specificity", "precision", "f1"))
        m["per_class"]["meningioma"]["support"] = 0
    results["methods"]["b"].update(
        classes_absent_deduplicated=["meningioma", "notumor"],
        classes_present_deduplicated=["glioma", "pituitary"],
        metrics_undefined_deduplicated={},
    )
    page = render_report(results, predictions)
    whole = (
        "The test has no meningioma item: per-class figures for meningioma undefined; balanced accuracy, "
        "macro averages and AUC over glioma, notumor, pituitary."
    )
    dedup = (
        "The deduplicated test has no meningioma or notumor item: per-class figures for meningioma and notumor "
        "undefined; balanced accuracy, macro averages and AUC over glioma, pituitary"
    )
    text = _text(page)
    assert text.count(whole) == 3  # under the results table, and in each method's metrics
    assert text.count(f"{dedup} (b).") == 1 and text.count(f"{dedup}.") == 1  # results section, b's metrics
    assert text.index(whole) < text.index("Duplicate inflation") < text.index(f"{dedup} (b).")
    assert _table(page, "class", after='id="method-0-a"')["meningioma"]["sensitivity"][0] == "n/a"


def test_pairwise_comparisons(cv_report):
    _, page = cv_report
    text = _text(page)
    assert "McNemar n01" in text and "adjusted p" in text
    assert (
        "Significant differences at α = 0.05 after adjustment for multiple comparisons: "
        "glcm-svm vs multifeature-rf (adjusted p < 0.001); glcm-svm vs wavelet-knn (adjusted p 0.020)." in text
    )


@pytest.mark.parametrize(
    ("split", "decided_by", "shown"),
    [("cv", "t_test", "corrected t-test"), ("official", "mcnemar", "McNemar"), ("cv", None, "McNemar")],
    ids=["cv", "single-test-set", "old-results"],
)
def test_pairwise_table_names_the_test_that_decided_each_row(make_benchmark, split, decided_by, shown):
    results, predictions = make_benchmark(split=split)
    for row in results["comparisons"]:
        if decided_by is None:  # results written before comparisons said which test decided: McNemar did
            del row["decided_by"]
    rows = _rows(render_report(results, predictions, figures={}), "method A", after='id="pairwise"')
    assert [row["decided by"][0] for row in rows] == [shown] * len(results["comparisons"])
    assert [row["adjusted p (Holm)"][0] for row in rows] == ["< 0.001", "0.020", "1.000"]


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


def test_per_fold_summary_rows_give_counts_as_integers(cv_report):
    results, page = cv_report
    folds = results["methods"]["glcm-svm"]["per_fold"]
    rows = _table(page, "fold", after='id="method-0-glcm-svm"')
    assert [rows[f["fold"]]["test items"][0] for f in folds] == [str(f["n_test"]) for f in folds]
    for column, key in (("training items", "n_train"), ("test items", "n_test")):
        counts = np.array([f[key] for f in folds])  # 96 95 96 95 96 and 24 25 24 25 24: mean 95.6 / 24.4, sd 0.55
        assert rows["mean"][column][0] == f"{counts.mean():.0f}"
        assert rows["sd"][column][0] == f"{counts.std(ddof=1):.0f}" == "1"
    accuracy = np.array([f["accuracy"] for f in folds])
    assert rows["mean"]["accuracy"][0] == f"{accuracy.mean():.3f}"
    assert rows["mean"]["AUC"][0] == ""  # a fold without AUC: no mean


def test_each_method_states_its_calibration(cv_report):
    results, page = cv_report
    text = _text(page)
    for m in results["methods"].values():
        confidence, accuracy = m["calibration"]["mean_confidence"], m["metrics"]["accuracy"]["value"]
        assert confidence < accuracy  # the fixture's softmax predictions are underconfident
        ece, brier = m["metrics"]["ece"], m["metrics"]["brier"]
        assert (
            f"Mean confidence (top-class probability) {confidence:.3f} at accuracy {accuracy:.3f} "
            f"(underconfident by {100 * (accuracy - confidence):.1f} percentage points); "
            f"ECE {ece['value']:.3f} [{ece['ci_low']:.3f}, {ece['ci_high']:.3f}], "
            f"Brier score {brier['value']:.3f} [{brier['ci_low']:.3f}, {brier['ci_high']:.3f}]"
        ) in text


@pytest.mark.parametrize(
    ("confidence", "verdict"), [(0.95, "overconfident by 10.0"), (0.8502, "as confident as it is accurate")]
)
def test_calibration_verdict(make_benchmark, confidence, verdict):
    results, predictions = make_benchmark(methods={"a": 0.9})
    results["methods"]["a"]["metrics"]["accuracy"]["value"] = 0.85
    results["methods"]["a"]["calibration"]["mean_confidence"] = confidence
    assert verdict in _text(render_report(results, predictions, figures={}))


def test_report_is_self_contained(cv_report):
    results, page = cv_report
    images = re.findall(r'<img src="([^"]*)" alt="([^"]*)"', page)
    # the chart, then a confusion matrix, ROC curves and a reliability diagram per method
    assert [alt for _, alt in images] == ["bar chart of the headline metrics of every method"] + [
        f"{kind} of {name}"
        for name in results["methods"]
        for kind in ("confusion matrix", "ROC curves", "reliability diagram")
    ]
    assert all(src.startswith("data:image/png;base64,iVBORw0KGgo") for src, _ in images)
    assert page.count("<figcaption>Below the diagonal the method is overconfident, above it underconfident") == len(
        results["methods"]
    )
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


def test_the_ood_section_shows_what_the_flag_catches_per_held_out_source_and_the_risk_coverage_curve(make_benchmark):
    results, predictions = make_benchmark(methods={"rf": 0.7, "glcm-svm": 0.8})
    curve = {"coverage": [0.5, 1.0], "accuracy": [0.9, 0.7], "mean_accuracy": 0.8}
    fold = {"flagged": 0.25, "wrong_flagged": 0.125, "right_flagged": 0.05, "accuracy": 0.61, "ece": 0.432}
    results["methods"]["rf"]["ood"] = {
        "detector": "Mahalanobis distance of the embedding",
        "flag_quantile": 0.99,
        "test_flagged": 0.25,
        "test_mean_score": 0.4,
        "wrong_flagged": 0.125,
        "right_flagged": 0.05,
        "accuracy_unflagged": 0.75,
        "coverage_unflagged": 0.8,
        "risk_coverage": {"ood_score": curve, "confidence": {**curve, "mean_accuracy": 0.85}},
        "per_fold": {"source <b>a</b>": {**fold, "accuracy_unflagged": 0.7, "coverage_unflagged": 0.75}},
    }
    figures = render_figures(results, predictions)
    assert "risk_coverage/rf" in figures and "risk_coverage/glcm-svm" not in figures
    page = render_report(results, predictions, figures)
    section = page[page.index('<h2 id="ood">') : page.index('<h2 id="pairwise">')]
    assert "0.750 (0.800)" in section and "0.800 / 0.850" in section  # accuracy kept (share kept); curve areas
    assert "source &lt;b&gt;a&lt;/b&gt;" in section and "0.432" in section  # the held-out source, its ECE
    assert 'alt="accuracy of rf when abstaining, against the share kept"' in section
