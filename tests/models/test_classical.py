import re

import numpy as np
import pytest

from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError, DataError
from brainmri.models.catalog import available_methods, get_method, parse_methods

#: Every registered method, as error messages and --help list them.
ALL_METHODS = ", ".join(available_methods())

CLASSICAL = ["glcm-svm", "multifeature-rf", "ovo-svm", "rf"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from brainmri.data.synthetic import write_demo_data

    root = write_demo_data(tmp_path_factory.mktemp("m") / "d", n=15, seed=3, size=64)
    paths = np.array(sorted(str(p) for p in root.rglob("*.png")))
    labels = np.array([p.split("/")[-2] for p in paths])
    return paths, labels


def build(name, seed=0):
    return get_method(name).builder(seed=seed, n_jobs=1, cache_dir=None, preprocess=Preprocess(size=64))


def test_registry_lists_the_classical_methods_with_references():
    methods = available_methods()
    assert set(CLASSICAL) <= set(methods)
    assert all(m.reference and m.summary for m in methods.values())
    for name in CLASSICAL:
        reference = methods[name].reference
        assert re.search(r"\(20\d\d\)", reference) and re.search(r"\d+-\d+", reference), reference  # year, pages
        assert "seed paper" not in reference and "et al." not in reference, reference  # every author named


@pytest.mark.parametrize(
    "text, message",
    [
        ("glcm-svm,nope", rf"unknown method 'nope'; valid methods: {ALL_METHODS}$"),
        ("", r"--methods needs at least one name"),
        (
            "rf,rf",
            r"--methods lists rf twice: rf,rf; to compare configurations of one method, name each one "
            r"\(rf@a,rf@b\) and give each its --params$",
        ),
        ("rf@a,glcm-svm,rf@a", r"--methods lists rf@a twice"),
        ("nope@a", rf"unknown method 'nope'; valid methods: {ALL_METHODS}$"),
        ("rf@a.b", r"method 'rf@a.b': the label after @ must be letters, digits, _ or - \(e.g. rf@config1\)$"),
        ("rf@", r"method 'rf@': the label after @ must be"),
    ],
)
def test_parse_methods_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_methods(text)


def test_parse_all():
    assert parse_methods("all") == list(available_methods())


def test_named_configurations_are_the_method_under_their_own_name():
    assert parse_methods("rf@small,rf@big,rf") == ["rf@small", "rf@big", "rf"]
    spec = get_method("rf@small")
    assert spec.name == "rf@small" and spec.builder is get_method("rf").builder
    with pytest.raises(ConfigError, match=r"^--params rf@small.nope: rf@small has no setting 'nope'"):
        spec.check_params({"nope": 1})


@pytest.mark.parametrize("name", CLASSICAL)
def test_method_fits_and_returns_probabilities(small, name):
    paths, labels = small
    train = np.arange(len(paths)) % 3 != 0
    model = build(name).fit(paths[train], labels[train])
    proba = model.predict_proba(paths[~train])
    assert proba.shape == (int((~train).sum()), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(model.classes_) == ["glioma", "meningioma", "notumor", "pituitary"]
    # Better than chance on the synthetic classes.
    assert (model.classes_[proba.argmax(1)] == labels[~train]).mean() > 0.4


@pytest.mark.parametrize("name", ["glcm-svm", "rf"])
def test_without_calibration_one_classifier_is_fitted_and_predicts(small, name, monkeypatch):
    """What ``brainmri tune`` scores its trials with: no CalibratedClassifierCV, the classifier's own predictions."""
    from sklearn.calibration import CalibratedClassifierCV

    paths, labels = small
    train = np.arange(len(paths)) % 3 != 0
    model = build(name)
    model.set_params(classifier__calibration=None)
    monkeypatch.setattr(CalibratedClassifierCV, "fit", lambda *a, **k: pytest.fail("calibrated although switched off"))
    model.fit(paths[train], labels[train])
    assert model.params_["calibration"] == "none"
    predicted = model.predict(paths[~train])
    np.testing.assert_array_equal(
        predicted, model.steps[-1][1].calibrated_.predict(model[:-1].transform(paths[~train]))
    )
    assert (predicted == labels[~train]).mean() > 0.4
    if name == "rf":  # a forest still has its vote shares
        np.testing.assert_allclose(model.predict_proba(paths[~train]).sum(axis=1), 1.0)
    else:
        with pytest.raises(AttributeError, match="calibration=None: it has no probabilities"):
            model.predict_proba(paths[~train])


def test_same_seed_same_probabilities(small):
    paths, labels = small
    a = build("rf", seed=1).fit(paths, labels).predict_proba(paths[:5])
    b = build("rf", seed=1).fit(paths, labels).predict_proba(paths[:5])
    np.testing.assert_array_equal(a, b)


def test_too_few_items_of_a_class(small):
    paths, labels = small
    keep = np.r_[np.flatnonzero(labels != "glioma"), np.flatnonzero(labels == "glioma")[:1]]
    with pytest.raises(DataError, match=r"class\(es\) 'glioma' \(1\) have fewer than 2 training images"):
        build("glcm-svm").fit(paths[keep], labels[keep])


def test_a_class_with_few_items_lowers_the_inner_folds(small):
    paths, labels = small
    keep = np.r_[np.flatnonzero(labels != "glioma"), np.flatnonzero(labels == "glioma")[:3]]
    model = build("rf").fit(paths[keep], labels[keep])
    assert model.params_["inner_cv"] == "StratifiedKFold, no groups given, 3 folds (class 'glioma' has only 3 items)"
    assert len(model[-1].calibrated_.cv) == 3


def test_single_class_is_refused(small):
    paths, labels = small
    one = labels == "glioma"
    with pytest.raises(DataError, match=r"training data has a single class \(glioma\)"):
        build("rf").fit(paths[one], labels[one])


@pytest.mark.parametrize("name", ["glcm-svm", "rf"])
def test_inner_folds_follow_the_groups_given(small, name):
    paths, labels = small
    groups = np.arange(len(paths)) // 3  # items 3g, 3g+1, 3g+2 form group g (one class each)
    model = build(name).fit(paths, labels, groups=groups)
    assert model.params_["inner_cv"].startswith(f"StratifiedGroupKFold over {len(set(groups))} groups")
    folds = [model[-1].calibrated_.cv] + ([model[-1].search_.cv] if name == "glcm-svm" else [])
    for splits in folds:
        for train, valid in splits:
            assert not set(groups[train]) & set(groups[valid])


def test_without_groups_the_method_says_so(small):
    paths, labels = small
    model = build("rf").fit(paths, labels)
    assert model.params_["inner_cv"] == "StratifiedKFold, no groups given"
    assert set(model.params_) == {"calibration", "inner_cv"}


def test_too_few_groups_of_a_class(small):
    paths, labels = small
    groups = np.arange(len(paths))
    groups[labels == "glioma"] = 0  # all glioma images in one group
    with pytest.raises(
        DataError,
        match=r"^class\(es\) 'glioma' \(1\) have fewer than 2 independent groups of training "
        r"images \(subjects or duplicate clusters\), too few for grouped inner "
        r"cross-validation; add images, merge classes with --label-map, or use fewer folds$",
    ):
        build("glcm-svm").fit(paths, labels, groups=groups)


def test_a_class_in_two_groups_gets_two_grouped_folds(small):
    paths, labels = small
    groups = np.arange(len(paths))
    groups[labels == "glioma"] = np.arange((labels == "glioma").sum()) % 2  # all glioma images in 2 groups
    model = build("rf").fit(paths, labels, groups=groups)
    assert model.params_["inner_cv"].endswith(", 2 folds (class 'glioma' has only 2 groups)")
    for train, valid in model[-1].calibrated_.cv:
        assert "glioma" in set(labels[train]) and not set(groups[train]) & set(groups[valid])


def test_groups_of_the_wrong_length(small):
    paths, labels = small
    with pytest.raises(DataError, match=r"groups must hold one id per training item, got 5 ids for 60 items"):
        build("rf").fit(paths, labels, groups=np.arange(5))


@pytest.mark.parametrize("module", ["brainmri.models.validation", "brainmri.evaluation.stats"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
