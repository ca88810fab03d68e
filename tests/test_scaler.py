import numpy as np

from nnctl.data.scaler import MinMaxScaler


def test_global_scaling_maps_the_training_range_to_0_1_in_float32():
    x = np.array([[0, 51, 255], [10, 20, 30]], dtype=np.uint8)
    scaled = MinMaxScaler.fit(x).transform(x)
    assert scaled.dtype == np.float32
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert np.allclose(scaled[0], [0, 0.2, 1])


def test_per_pixel_scaling_matches_minmaxscaler_including_constant_pixels():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (50, 6)).astype(np.uint8)
    x[:, 2] = 7  # zero range: scikit-learn gives 0, not a division by zero
    scaler = MinMaxScaler.fit(x, "per_pixel")
    scaled = scaler.transform(x, np.float64)
    lo, hi = x.min(axis=0).astype(float), x.max(axis=0).astype(float)
    span = np.where(hi - lo == 0, 1.0, hi - lo)
    assert np.allclose(scaled, (x - lo) / span)
    assert np.all(scaled[:, 2] == 0.0)
    assert np.isfinite(scaled).all()


def test_the_fitted_arrays_are_all_a_weights_file_needs():
    x = np.random.default_rng(0).integers(0, 256, (20, 4)).astype(np.uint8)
    for mode in ("global", "per_pixel", "standard", "standard_per_pixel"):
        scaler = MinMaxScaler.fit(x, mode)
        again = MinMaxScaler.from_arrays(scaler.to_arrays())
        assert again.per_pixel == mode.endswith("per_pixel")
        assert np.array_equal(again.transform(x), scaler.transform(x))
