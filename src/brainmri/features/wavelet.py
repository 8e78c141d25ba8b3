"""Discrete wavelet transform sub-band features (PyWavelets)."""

from __future__ import annotations

import numpy as np

from brainmri.features.base import ImageTransformer

_STATS = ("energy", "entropy", "mean_abs", "std")


class WaveletFeatures(ImageTransformer):
    """Statistics of each sub-band of a multi-level 2D DWT (``pywt.wavedec2``).

    The wavelet features of Mohsen et al. (2018), "Classification using deep
    learning neural networks for brain tumors", Future Computing and
    Informatics Journal 3(1):68-71, doi:10.1016/j.fcij.2017.12.001.

    Parameters
    ----------
    wavelet : str
        A PyWavelets discrete wavelet name (``"haar"``, ``"db4"``...).
    level : int
        Decomposition levels.

    Output: 4 statistics (energy, entropy, mean absolute value, std) for the
    approximation band and the 3 detail bands of every level:
    ``4 * (1 + 3 * level)`` features.
    """

    version = 1  # bump with every change of the output (see ImageTransformer.version)

    def __init__(self, *, wavelet="haar", level=3):
        self.wavelet = wavelet
        self.level = level

    def _validate(self):
        import pywt

        self._check(
            self.wavelet in pywt.wavelist(kind="discrete"),
            "wavelet",
            self.wavelet,
            "a discrete PyWavelets wavelet such as 'haar' or 'db4'",
        )
        self._check(1 <= int(self.level) <= 8, "level", self.level, "an integer in 1..8")

    def _names(self):
        bands = ["cA"] + [f"{d}{lvl}" for lvl in range(int(self.level), 0, -1) for d in ("cH", "cV", "cD")]
        return [f"dwt_{b}_{s}" for b in bands for s in _STATS]

    def _extract(self, image):
        import pywt

        coeffs = pywt.wavedec2(image, self.wavelet, level=int(self.level))
        bands = [coeffs[0]] + [band for detail in coeffs[1:] for band in detail]
        values = []
        for band in bands:
            band = band.ravel()
            energy = float(np.mean(band**2))
            p = band**2 / (band**2).sum() if energy > 0 else np.zeros(1)
            p = p[p > 0]
            values += [energy, float(-(p * np.log2(p)).sum()), float(np.abs(band).mean()), float(band.std())]
        return np.asarray(values)
