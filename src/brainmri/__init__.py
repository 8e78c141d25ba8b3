"""brainmri: brain MRI classification with every family of method, compared honestly."""

__version__ = "0.1.0"


def load_model(path, **kwargs):
    """Load a model bundle written by ``brainmri train`` (see :func:`brainmri.models.bundle.load_model`).

    >>> model = brainmri.load_model("model/")                    # doctest: +SKIP
    >>> model.predict_proba(["scan.png"]), model.classes_         # doctest: +SKIP
    """
    from brainmri.models.bundle import load_model as load

    return load(path, **kwargs)
