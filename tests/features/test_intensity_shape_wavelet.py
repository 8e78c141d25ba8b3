import numpy as np
import pytest

from brainmri.errors import ConfigError, DataError
from brainmri.features import IntensityFeatures, OtsuFeatures, ShapeFeatures, WaveletFeatures


def two_level_image():
    """A 20x20 image: a bright 10x8 rectangle (value 0.8) on a dark background (0.2)."""
    image = np.full((20, 20), 0.2)
    image[5:15, 6:14] = 0.8
    return image


def test_intensity_statistics_by_hand():
    image = two_level_image()
    f = IntensityFeatures(bins=4).fit()
    row = dict(zip(f.get_feature_names_out(), f.transform([image])[0], strict=True))
    # 80 of 400 pixels are 0.8: mean = 0.2 + 0.6 * 0.2 = 0.32; std = 0.6 * sqrt(0.2 * 0.8) = 0.24
    assert row["intensity_mean"] == pytest.approx(0.32)
    assert row["intensity_std"] == pytest.approx(0.24)
    assert row["intensity_entropy"] == pytest.approx(-(0.2 * np.log2(0.2) + 0.8 * np.log2(0.8)))
    assert row["intensity_p50"] == pytest.approx(0.2, abs=1 / 256)
    # 4 bins over [0, 1]: 0.2 falls in bin 0, 0.8 in bin 3
    assert [row[f"hist_{k}"] for k in range(4)] == pytest.approx([0.8, 0.0, 0.0, 0.2])


def test_otsu_features_by_hand():
    f = OtsuFeatures().fit()
    row = dict(zip(f.get_feature_names_out(), f.transform([two_level_image()])[0], strict=True))
    assert row["otsu_foreground"] == pytest.approx(0.2)
    assert row["otsu_in_mean"] == pytest.approx(0.8)
    assert row["otsu_out_mean"] == pytest.approx(0.2)
    assert row["otsu_contrast"] == pytest.approx(0.6)


def test_shape_of_a_rectangle():
    f = ShapeFeatures().fit()
    row = dict(zip(f.get_feature_names_out(), f.transform([two_level_image()])[0], strict=True))
    assert row["shape_area"] == pytest.approx(80 / 400)
    assert row["shape_extent"] == pytest.approx(1.0)
    assert row["shape_solidity"] == pytest.approx(1.0)
    assert row["shape_n_components"] == 1


def test_constant_image_gives_finite_features():
    image = np.full((16, 16), 0.5)
    for extractor in (IntensityFeatures(), OtsuFeatures(), ShapeFeatures(), WaveletFeatures(level=2)):
        assert np.all(np.isfinite(extractor.fit().transform([image])))


def test_wavelet_detail_bands_of_a_constant_image_are_zero():
    f = WaveletFeatures(wavelet="haar", level=1).fit()
    row = dict(zip(f.get_feature_names_out(), f.transform([np.full((8, 8), 0.5)])[0], strict=True))
    assert f.n_features_out_ == 4 * (1 + 3)
    assert row["dwt_cH1_energy"] == 0 and row["dwt_cD1_std"] == 0
    assert row["dwt_cA_energy"] == pytest.approx(1.0)  # haar approximation of 0.5 is 2 * 0.5 = 1


@pytest.mark.parametrize(
    "extractor, message",
    [
        (WaveletFeatures(wavelet="morlet"), r"WaveletFeatures: wavelet must be a discrete PyWavelets wavelet"),
        (WaveletFeatures(level=0), r"level must be an integer in 1\.\.8, got 0"),
        (IntensityFeatures(bins=-1), r"bins must be a non-negative integer, got -1"),
    ],
)
def test_bad_parameters(extractor, message):
    with pytest.raises(ConfigError, match=message):
        extractor.fit()


def test_3d_input_is_refused():
    with pytest.raises(DataError, match=r"IntensityFeatures: image 0 has shape \(2, 4, 4\); expected a 2D slice"):
        IntensityFeatures().fit().transform([np.zeros((2, 4, 4))])
