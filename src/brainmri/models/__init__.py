"""Methods: one registry, one interface (fit on image paths + labels, predict class probabilities).

:mod:`~brainmri.models.registry` registers methods, :mod:`~brainmri.models.catalog` holds them all
(``get_method``, ``available_methods``); see :mod:`~brainmri.models.base` for the method contract.
"""
