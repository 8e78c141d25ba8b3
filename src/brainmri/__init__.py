"""brainmri: brain MRI classification with every family of method, compared honestly.

The packages form layers, each importing only from those below (docs/architecture.md, checked by ``lint-imports``):
``cli`` > ``api`` > ``tuning`` | ``regions`` | ``serve`` > ``runs`` > ``explain`` > ``models`` > ``report`` > ``evaluation`` >
``robust`` > ``features`` > ``training`` > ``nets`` > ``data`` > ``outputs`` | ``steps`` > ``files`` > ``errors`` |
``version``.
"""

from brainmri.version import __version__

__all__ = ["__version__", "audit", "benchmark", "load_model", "train"]


def audit(data, **kwargs):
    """Audit a dataset: duplicates, leaks, unreadable files (:func:`brainmri.api.audit`, ``brainmri audit``)."""
    from brainmri.api import audit as run

    return run(data, **kwargs)


def benchmark(data, methods=("glcm-svm",), **kwargs):
    """Compare methods on a dataset under one protocol (:func:`brainmri.api.benchmark`, ``brainmri benchmark``).

    >>> run = brainmri.benchmark("data/", ["glcm-svm", "rf"], out="bench/")  # doctest: +SKIP
    >>> run.metrics, run.report                                             # doctest: +SKIP
    """
    from brainmri.api import benchmark as run

    return run(data, methods, **kwargs)


def train(data, method, **kwargs):
    """Train a method on all of a dataset and write a bundle (:func:`brainmri.api.train`, ``brainmri train``)."""
    from brainmri.api import train as run

    return run(data, method, **kwargs)


def load_model(path, **kwargs):
    """Load a model bundle written by ``brainmri train`` (see :func:`brainmri.models.bundle.load_model`).

    >>> model = brainmri.load_model("model/")                    # doctest: +SKIP
    >>> model.predict_proba(["scan.png"]), model.classes_         # doctest: +SKIP
    """
    from brainmri.models.bundle import load_model as load

    return load(path, **kwargs)
