"""Classical feature extractors (scikit-learn transformers over preprocessed 2D images)."""

from brainmri.features.intensity import IntensityFeatures, OtsuFeatures
from brainmri.features.shape import ShapeFeatures
from brainmri.features.texture import GLCMFeatures, LBPFeatures
from brainmri.features.wavelet import WaveletFeatures

__all__ = ["GLCMFeatures", "IntensityFeatures", "LBPFeatures", "OtsuFeatures", "ShapeFeatures", "WaveletFeatures"]
