import doctest

import pytest

from brainmri.evaluation import coverage
from brainmri.evaluation.coverage import class_coverage, coverage_statement, coverage_statements
from brainmri.evaluation.metrics import METRICS


def test_docstring_examples():
    result = doctest.testmod(coverage)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    "support, absent, present, undefined",
    [
        ({"a": 2, "b": 1, "c": 4}, [], ["a", "b", "c"], []),
        ({"a": 2, "b": 0, "c": 4}, ["b"], ["a", "c"], []),
        ({"a": 2, "b": 0, "c": 0}, ["b", "c"], ["a"], ["auc", "specificity"]),
        ({"a": 0, "b": 0, "c": 0}, ["a", "b", "c"], [], list(METRICS)),
    ],
)
def test_class_coverage(support, absent, present, undefined):
    out = class_coverage(support, test="deduplicated test")
    assert (out["classes_absent"], out["classes_present"], list(out["metrics_undefined"])) == (
        absent,
        present,
        undefined,
    )
    assert all("deduplicated test" in reason for reason in out["metrics_undefined"].values())


def test_statement_lists_several_absent_classes():
    text = coverage_statement(class_coverage({"a": 1, "b": 0, "c": 0, "d": 0, "e": 3}), test="deduplicated test")
    assert text == (
        "deduplicated test has no b, c or d item: per-class figures for b, c and d undefined; "
        "balanced accuracy, macro averages and AUC over a, e"
    )


def test_statements_group_methods_and_name_them_unless_all():
    missing_b = {"classes_absent_deduplicated": ["b"], "classes_present_deduplicated": ["a", "c"]}
    missing_c = {"classes_absent_deduplicated": ["c"], "classes_present_deduplicated": ["a", "b"]}
    methods = {"rf": missing_b, "svm": missing_c, "knn": missing_b}
    assert coverage_statements(methods, "_deduplicated") == [
        "deduplicated test has no b item: per-class figures for b undefined; balanced accuracy, macro averages "
        "and AUC over a, c (rf, knn)",
        "deduplicated test has no c item: per-class figures for c undefined; balanced accuracy, macro averages "
        "and AUC over a, b (svm)",
    ]
    assert coverage_statements({"rf": missing_b}, "") == []  # the whole test lacks nothing
    assert len(coverage_statements({"rf": missing_b, "knn": missing_b}, "_deduplicated")) == 1
