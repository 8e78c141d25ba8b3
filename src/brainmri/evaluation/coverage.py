"""Which classes a test part holds, which figures that leaves undefined, and the sentence that says so.

A test part can lack a class entirely: with flips counted, the test images of
brain-tumor-mri that copy no training image (its deduplicated test) hold no
``notumor`` image. The per-class figures of ``notumor`` there are then
undefined, and balanced accuracy, the macro averages and the AUC average over
the other classes only (the conventions of :mod:`brainmri.evaluation.metrics`).
Printed like the figures of a complete test, they would read as if they
covered every class; so :func:`class_coverage` names the classes absent and
present and the metrics left undefined (with the reason), the benchmark
writes that beside the figures, and :func:`coverage_statements` says it in
one line for the terminal and the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from brainmri.evaluation.metrics import METRICS

#: Metrics that need items of at least two classes: the AUC of a class against the rest, and the specificity
#: of a class (the share of the other classes' items not called it).
TWO_CLASS_METRICS = ("auc", "specificity")

#: The test parts of a ``results.json`` method entry: the suffix of their keys and their name in words.
TEST_PARTS = {"": "test", "_deduplicated": "deduplicated test"}

#: The keys of :func:`class_coverage`; a method entry of ``results.json`` has them with the suffix of a test part
#: (:data:`TEST_PARTS`) where that part lacks a class.
COVERAGE_KEYS = ("classes_absent", "classes_present", "metrics_undefined")

#: How metrics are named in the sentences (others by their key, underscores as spaces).
_LABELS = {"auc": "AUC", "macro_f1": "macro F1"}


def class_coverage(support: Mapping[str, int], *, test: str = "test") -> dict:
    """The classes a test part has no item of, those it has, and the metrics that leaves undefined.

    Parameters
    ----------
    support : mapping of str to int
        The number of items of every class of the run in the test part (the
        ``support`` of each class in ``per_class``), in class order.
    test : str, default "test"
        What the test part is called, for the reasons.

    Returns
    -------
    dict
        ``{"classes_absent": list of str, "classes_present": list of str,
        "metrics_undefined": {metric: reason}}``, classes in the order of
        ``support``. ``metrics_undefined`` holds every metric of
        :data:`~brainmri.evaluation.metrics.METRICS` when the part is empty,
        those of :data:`TWO_CLASS_METRICS` when it holds a single class, and
        nothing otherwise.

    Examples
    --------
    >>> class_coverage({"glioma": 3, "notumor": 0, "pituitary": 2})
    {'classes_absent': ['notumor'], 'classes_present': ['glioma', 'pituitary'], 'metrics_undefined': {}}
    >>> class_coverage({"glioma": 3, "notumor": 0}, test="deduplicated test")["metrics_undefined"]["auc"]
    'needs items of at least two classes; the deduplicated test has only glioma'
    """
    present = [c for c, n in support.items() if n > 0]
    absent = [c for c, n in support.items() if n <= 0]
    if not present:
        undefined = dict.fromkeys(METRICS, f"the {test} has no item")
    elif len(present) == 1:
        undefined = dict.fromkeys(
            TWO_CLASS_METRICS, f"needs items of at least two classes; the {test} has only {present[0]}"
        )
    else:
        undefined = {}
    return dict(zip(COVERAGE_KEYS, (absent, present, undefined), strict=True))


def coverage_statement(coverage: dict, *, test: str = "test") -> str:
    """One line that says what :func:`class_coverage` found, for a test part that lacks a class.

    Examples
    --------
    The clauses of the line, one per row:

    >>> support = {"glioma": 5, "meningioma": 4, "notumor": 0, "pituitary": 2}
    >>> print(*coverage_statement(class_coverage(support), test="deduplicated test").split("; "), sep="\\n")
    deduplicated test has no notumor item: per-class figures for notumor undefined
    balanced accuracy, macro averages and AUC over glioma, meningioma, pituitary
    >>> print(*coverage_statement(class_coverage({"a": 2, "b": 0, "c": 0})).split("; "), sep="\\n")
    test has no b or c item: per-class figures for b and c undefined
    balanced accuracy and macro averages over a alone
    AUC and specificity undefined (they need items of two classes)
    >>> coverage_statement(class_coverage({"a": 0, "b": 0}))
    'test has no item: every figure undefined'
    """
    absent, present = coverage["classes_absent"], coverage["classes_present"]
    if not present:
        return f"{test} has no item: every figure undefined"
    text = f"{test} has no {_listed(absent, 'or')} item: per-class figures for {_listed(absent, 'and')} undefined; "
    if len(present) > 1:
        return text + f"balanced accuracy, macro averages and AUC over {', '.join(present)}"
    undefined = [_LABELS.get(m, m.replace("_", " ")) for m in coverage["metrics_undefined"]]
    return (
        text + f"balanced accuracy and macro averages over {present[0]} alone; "
        f"{_listed(undefined, 'and')} undefined (they need items of two classes)"
    )


def coverage_statements(methods: Mapping[str, dict], suffix: str = "") -> list[str]:
    """A :func:`coverage_statement` for each different way a test part of ``methods`` lacks a class.

    Parameters
    ----------
    methods : mapping of str to dict
        Method name -> its entry of ``results.json``; the test part lacks a
        class where the entry has a non-empty ``classes_absent`` + ``suffix``.
        Entries written before these keys existed have none.
    suffix : str, default ""
        The test part, by the suffix of its keys (:data:`TEST_PARTS`): ``""``
        for the whole test, ``"_deduplicated"`` for its items that copy no
        training item.

    Returns
    -------
    list of str
        One statement per distinct finding (methods scored on the same items
        share one), followed by the methods it applies to in parentheses
        unless it applies to all of ``methods``; empty when no entry lacks a
        class.

    Examples
    --------
    >>> entry = {"classes_absent": ["b"], "classes_present": ["a", "c"], "metrics_undefined": {}}
    >>> coverage_statements({"rf": entry, "svm": entry, "knn": {}})
    ['test has no b item: per-class figures for b undefined; balanced accuracy, macro averages and AUC over a, c (rf, svm)']
    """
    statements: dict[str, list[str]] = {}
    for name, entry in methods.items():
        if entry.get(f"classes_absent{suffix}"):
            coverage = {key: entry.get(f"{key}{suffix}", ()) for key in COVERAGE_KEYS}
            statements.setdefault(coverage_statement(coverage, test=TEST_PARTS[suffix]), []).append(name)
    return [
        statement + ("" if len(names) == len(methods) else f" ({', '.join(names)})")
        for statement, names in statements.items()
    ]


def _listed(items: Sequence[str], conjunction: str) -> str:
    """``a``, ``a and b``, ``a, b and c`` (or ``or``)."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conjunction} {items[-1]}"
