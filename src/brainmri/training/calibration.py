"""Temperature scaling of a network's outputs (Guo et al. 2017).

One scalar ``T > 0`` divides the logits before the softmax; it is fitted by
minimising the negative log-likelihood on held-out items (the grouped
validation part), so the predicted class never changes and the confidence
matches the accuracy on that part.

References
----------
C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On calibration of modern
neural networks", Proc. 34th International Conference on Machine Learning,
PMLR 70:1321-1330, 2017.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

#: Bounds of log T searched: T from 0.05 to 20.
LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the NLL of ``softmax(logits / T)`` on labels ``y``.

    Parameters
    ----------
    logits : ndarray of shape (n, n_classes)
    y : ndarray of int, shape (n,)
        Class indices.

    Returns
    -------
    float
        ``T`` in [0.05, 20]; 1.0 for no items.

    Examples
    --------
    >>> logits = np.array([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, 4.0]])
    >>> round(fit_temperature(logits, np.array([0, 1, 1, 0])), 1)  # half wrong: flatten
    20.0
    """
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if not len(y):
        return 1.0

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    # A 1D bounded search (Brent): the NLL is smooth and unimodal in log T; no gradient code needed.
    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))
