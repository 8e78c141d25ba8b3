"""brainmri: brain MRI classification with every family of method, compared honestly.

The packages form layers, each importing only from those below (docs/architecture.md, checked by ``lint-imports``):
``cli`` > ``tuning`` | ``regions`` | ``serve`` > ``runs`` > ``explain`` > ``models`` > ``report`` > ``evaluation`` >
``robust`` > ``features`` > ``training`` > ``nets`` > ``data`` > ``outputs`` | ``steps`` > ``files`` > ``errors`` |
``version``.
"""

from brainmri.version import __version__

__all__ = ["__version__", "load_model"]


def load_model(path, **kwargs):
    """Load a model bundle written by ``brainmri train`` (see :func:`brainmri.models.bundle.load_model`).

    >>> model = brainmri.load_model("model/")                    # doctest: +SKIP
    >>> model.predict_proba(["scan.png"]), model.classes_         # doctest: +SKIP
    """
    from brainmri.models.bundle import load_model as load

    return load(path, **kwargs)
