"""Feature extractors (scikit-learn transformers over 2D images): classical ones, backbone embeddings, acquisition descriptors."""

from brainmri.features.acquisition import AcquisitionDescriptors
from brainmri.features.embeddings import BackboneEmbeddings
from brainmri.features.fcm import FCMWaveletFeatures
from brainmri.features.intensity import IntensityFeatures, OtsuFeatures
from brainmri.features.shape import ShapeFeatures
from brainmri.features.texture import GLCMFeatures, LBPFeatures
from brainmri.features.wavelet import WaveletFeatures

#: Every extractor class; their ``version`` values are recorded in ``results.json``.
EXTRACTORS = (
    AcquisitionDescriptors,
    BackboneEmbeddings,
    FCMWaveletFeatures,
    GLCMFeatures,
    IntensityFeatures,
    LBPFeatures,
    OtsuFeatures,
    ShapeFeatures,
    WaveletFeatures,
)

__all__ = [
    "EXTRACTORS",
    "AcquisitionDescriptors",
    "BackboneEmbeddings",
    "FCMWaveletFeatures",
    "GLCMFeatures",
    "IntensityFeatures",
    "LBPFeatures",
    "OtsuFeatures",
    "ShapeFeatures",
    "WaveletFeatures",
]
