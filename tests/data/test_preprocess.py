"""Preprocessing: gray, resize, per-image min-max (constant images give zeros), the fundus
modes and their percentile rescale."""

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from uadjax.data.preprocess import minmax, percentile_rescale, preprocess


def test_minmax_numpy_and_jax_agree_and_span_unit_interval():
  x = np.random.default_rng(0).normal(size=(3, 8, 8, 1)).astype(np.float32) * 5 + 2
  out_np = minmax(x)
  out_jax = np.asarray(minmax(jnp.asarray(x)))
  np.testing.assert_allclose(out_np, out_jax, atol=1e-6)
  assert np.allclose(out_np.min(axis=(1, 2, 3)), 0) and np.allclose(out_np.max(axis=(1, 2, 3)), 1)


def test_constant_image_gives_zeros_not_nan():
  out = minmax(np.full((2, 4, 4, 1), 7.0, np.float32))
  assert np.all(out == 0) and not np.any(np.isnan(out))
  out = np.asarray(minmax(jnp.full((4, 4, 1), 3.0)))
  assert np.all(out == 0)


def test_preprocess_modes_give_one_channel_in_unit_range():
  rng = np.random.default_rng(0)
  rgb = Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8), 'RGB')
  rgba = rgb.convert('RGBA')
  gray = rgb.convert('L')
  wide = Image.fromarray(rng.integers(0, 4000, (40, 40), dtype=np.uint16).astype(np.int32), 'I')
  for image in (rgb, rgba, gray, wide):
    out = preprocess(image, 16)
    assert out.shape == (16, 16, 1) and out.dtype == np.float32
    assert out.min() == 0 and np.isclose(out.max(), 1)
  # Alpha is ignored: RGBA and RGB give the same gray image.
  np.testing.assert_allclose(preprocess(rgba, 16), preprocess(rgb, 16))


def test_tinted_gray_becomes_gray():
  # A tint (ids 162-177 of the real set) must not survive as a channel difference.
  gray = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
  tinted = np.stack([gray, (gray * 0.9).astype(np.uint8), (gray * 0.8).astype(np.uint8)], -1)
  out = preprocess(Image.fromarray(tinted, 'RGB'), 32)
  assert out.shape[-1] == 1


def test_preprocess_modes_give_their_channels_in_unit_range():
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
  rgb = preprocess(image, 16, 'rgb')
  rg = preprocess(image, 16, 'rg_percentile')
  gray = preprocess(image, 16, 'gray')
  assert rgb.shape == (16, 16, 3) and rg.shape == (16, 16, 2) and gray.shape == (16, 16, 1)
  for x in (rgb, rg, gray):
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
  # rgb is the plain /255 resize: the blue channel survives.
  expected = np.asarray(image.resize((16, 16), Image.BILINEAR), np.float32) / 255
  np.testing.assert_allclose(rgb, expected, atol=1e-6)
  with pytest.raises(ValueError, match='data.preprocess'):
    preprocess(image, 16, 'hsv')


def test_percentile_rescale_clips_the_top_and_spans_the_range():
  x = np.zeros((100, 100, 2), np.float32)
  x[..., 0] = 100.0
  x[..., 1] = 50.0
  x[0, 0, 0] = 10000.0  # one hot pixel: above the 99.99th percentile of 20000 values
  out = percentile_rescale(x)
  assert out[0, 0, 0] == 1.0
  lo, hi = 50.0, np.percentile(x, 99.99)  # one range over both channels
  assert hi < 10000
  np.testing.assert_allclose(out[1, 1], [(100 - lo) / (hi - lo), 0.0], rtol=1e-5)
  assert not percentile_rescale(np.ones((4, 4, 2), np.float32)).any()
