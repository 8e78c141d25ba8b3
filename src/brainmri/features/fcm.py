"""Fuzzy C-means segmentation of a slice and wavelet features of the segmented image.

The features of Mohsen et al. (2018): each slice is segmented by fuzzy
C-means (FCM) on its intensities into five tissue classes (in the study grey
matter, white matter, cerebrospinal fluid, skull and tumour), every pixel is
replaced by the intensity of its cluster, and the approximation coefficients
of a 3-level Haar discrete wavelet transform of that segmented image are the
feature vector (1024 values for the study's 256 x 256 slices), later reduced
by PCA before the deep network.

Why FCM runs on the histogram. FCM on intensities is one-dimensional, and
pixels of equal intensity have equal memberships at every iteration, so the
algorithm on the pixels equals the algorithm on the distinct intensities,
each weighted by its pixel count. :func:`~brainmri.data.tissue.fuzzy_cmeans_1d` implements the
update of scikit-fuzzy's ``skfuzzy.cmeans`` (Ross 2010, eq. 10.28-10.35,
with the same stopping rule: the Frobenius norm of the membership change over
all pixels) on the 256-bin histogram of the slice (the slices are 8-bit
images), and ``tests/features/test_fcm.py`` checks that it gives
scikit-fuzzy's centres and memberships. On 300 brain-tumor-mri training
slices (one core of this project's 2-core CPU), ``skfuzzy.cmeans`` on the
65,536 pixels of a 256 x 256 slice took 4.8 s per slice (61 to 100
iterations), the histogram version with the wavelet transform 7.8 ms: 9
hours or 1 minute for the 7,023 images of the dataset.

Why the initial centres are evenly spaced. ``skfuzzy.cmeans`` starts from
random memberships drawn with a seed; here the initial centres are spread
evenly over the slice's intensity range (at ``(k + 0.5) / n_clusters`` of
it), which is deterministic without a seed. Quantiles of the intensities
would coincide on the large dark background of a slice, and FCM never
separates centres that start equal. The clusters are numbered by increasing centre, so label 0 is
always the darkest class and the labels mean the same on every slice.

References
----------
H. Mohsen, E.-S. A. El-Dahshan, E.-S. M. El-Horbaty and A.-B. M. Salem,
"Classification using deep learning neural networks for brain tumors",
Future Computing and Informatics Journal 3(1):68-71, 2018.
DOI: 10.1016/j.fcij.2017.12.001

J. C. Bezdek, R. Ehrlich and W. Full, "FCM: the fuzzy c-means clustering
algorithm", Computers & Geosciences 10(2-3):191-203, 1984.
DOI: 10.1016/0098-3004(84)90020-7

T. J. Ross, Fuzzy Logic with Engineering Applications, 3rd ed., Wiley,
2010, pp. 352-353. ISBN 978-0-470-74376-8
"""

from __future__ import annotations

import numpy as np

from brainmri.data.preprocess import resize
from brainmri.data.tissue import histogram_fcm
from brainmri.errors import ConfigError
from brainmri.features.base import ImageTransformer

#: Colours of the segmentation pictures, darkest cluster first (RGB, uint8).
PALETTE = np.array(
    [
        (0, 0, 0),
        (38, 70, 160),
        (40, 160, 120),
        (235, 200, 60),
        (215, 50, 40),
        (160, 60, 200),
        (250, 140, 20),
        (130, 130, 130),
    ],
    dtype=np.uint8,
)


def fcm_segment(
    image: np.ndarray, *, n_clusters: int = 5, m: float = 2.0, error: float = 0.005, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Segment a slice into ``n_clusters`` intensity classes by fuzzy C-means.

    Intensities are quantised to 256 levels, FCM runs on their histogram
    (:func:`~brainmri.data.tissue.fuzzy_cmeans_1d`, initial centres evenly spaced over the
    intensity range) and each pixel
    takes the cluster of highest membership. Clusters are numbered by
    increasing centre.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Values in [0, 1] (values outside are clipped).
    n_clusters, m, error, max_iter
        See :func:`~brainmri.data.tissue.fuzzy_cmeans_1d`.

    Returns
    -------
    labels : ndarray of int64, shape (H, W)
        Cluster of every pixel, 0 the darkest.
    centres : ndarray of float64, shape (n_clusters,)
        Increasing cluster intensities.

    Examples
    --------
    >>> labels, centres = fcm_segment(np.array([[0.0, 0.0], [0.5, 1.0]]), n_clusters=3)
    >>> labels.tolist(), np.round(centres, 2).tolist()
    ([[0, 0], [1, 2]], [0.0, 0.5, 1.0])
    """
    levels, present, centres, u = histogram_fcm(image, n_clusters, m=m, error=error, max_iter=max_iter)
    order = np.argsort(centres, kind="stable")
    rank = np.empty(n_clusters, dtype=np.int64)
    rank[order] = np.arange(n_clusters)
    of_level = np.zeros(256, dtype=np.int64)
    of_level[present] = rank[u.argmax(axis=0)]
    return of_level[levels], centres[order]


class FCMWaveletFeatures(ImageTransformer):
    """Approximation coefficients of a Haar DWT of the FCM-segmented slice (Mohsen et al. 2018).

    The slice is resized to ``size x size``, segmented by :func:`fcm_segment`,
    every pixel replaced by its cluster's centre intensity, and the
    approximation band of a ``level``-level 2D DWT (``pywt.wavedec2``) of that
    image is flattened row by row.

    Parameters
    ----------
    n_clusters : int
        FCM classes (5 in the study).
    m : float
        FCM fuzzifier.
    error : float
        FCM stopping tolerance (see :func:`~brainmri.data.tissue.fuzzy_cmeans_1d`).
    max_iter : int
        FCM iteration limit.
    size : int
        Side of the segmented image (256 in the study); must be divisible by
        ``2 ** level``.
    wavelet : str
        A PyWavelets discrete wavelet name.
    level : int
        Decomposition levels.

    Output: ``(size / 2**level) ** 2`` features (1024 with the defaults).

    References
    ----------
    H. Mohsen, E.-S. A. El-Dahshan, E.-S. M. El-Horbaty and A.-B. M. Salem,
    "Classification using deep learning neural networks for brain tumors",
    Future Computing and Informatics Journal 3(1):68-71, 2018.
    DOI: 10.1016/j.fcij.2017.12.001
    """

    version = 1  # bump with every change of the output (see ImageTransformer.version)

    def __init__(self, *, n_clusters=5, m=2.0, error=0.005, max_iter=100, size=256, wavelet="haar", level=3):
        self.n_clusters = n_clusters
        self.m = m
        self.error = error
        self.max_iter = max_iter
        self.size = size
        self.wavelet = wavelet
        self.level = level

    def _validate(self):
        import pywt

        self._check(
            isinstance(self.n_clusters, int) and 2 <= self.n_clusters <= len(PALETTE),
            "n_clusters",
            self.n_clusters,
            f"an integer in 2..{len(PALETTE)}",
        )
        self._check(isinstance(self.m, (int, float)) and self.m > 1, "m", self.m, "a number > 1")
        self._check(isinstance(self.error, (int, float)) and self.error > 0, "error", self.error, "a number > 0")
        self._check(isinstance(self.max_iter, int) and self.max_iter >= 1, "max_iter", self.max_iter, "an integer >= 1")
        self._check(
            self.wavelet in pywt.wavelist(kind="discrete"),
            "wavelet",
            self.wavelet,
            "a discrete PyWavelets wavelet such as 'haar' or 'db4'",
        )
        self._check(isinstance(self.level, int) and 1 <= self.level <= 8, "level", self.level, "an integer in 1..8")
        self._check(
            isinstance(self.size, int) and self.size >= 2**self.level and self.size % 2**self.level == 0,
            "size",
            self.size,
            f"a multiple of 2**level = {2**self.level}",
        )
        if pywt.Wavelet(self.wavelet).dec_len != 2:
            raise ConfigError(
                f"FCMWaveletFeatures: wavelet must have 2 filter taps (such as 'haar') so that the "
                f"approximation band is size / 2**level wide, got {self.wavelet!r}"
            )

    def _names(self):
        side = self.size // 2**self.level
        return [f"fcm_dwt_cA{self.level}_{r}_{c}" for r in range(side) for c in range(side)]

    def segment(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """FCM labels of ``image`` resized to ``size``; see :func:`fcm_segment`."""
        image = np.asarray(image, dtype=np.float64)
        if image.shape != (self.size, self.size):
            image = resize(image, self.size)
        return fcm_segment(image, n_clusters=self.n_clusters, m=self.m, error=self.error, max_iter=self.max_iter)

    def _extract(self, image):
        import pywt

        labels, centres = self.segment(image)
        return pywt.wavedec2(centres[labels], self.wavelet, level=self.level)[0].ravel()

    def illustrate(self, image: np.ndarray) -> tuple[str, np.ndarray]:
        """The slice beside its segmentation, as an RGB picture with its caption.

        Returns
        -------
        caption : str
        picture : ndarray of uint8, shape (size, 2 * size, 3)
            Left the resized slice in grey, right every pixel in the
            :data:`PALETTE` colour of its cluster (black the darkest).
        """
        self._validate()
        image = np.asarray(image, dtype=np.float64)
        if image.shape != (self.size, self.size):
            image = resize(image, self.size)
        labels, _ = self.segment(image)
        grey = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
        caption = (
            f"fuzzy C-means segmentation into {self.n_clusters} intensity classes (left the slice, right "
            "its classes from dark to bright: black, blue, green, yellow, red...)"
        )
        return caption, np.hstack([np.repeat(grey[..., None], 3, axis=2), PALETTE[labels]])
