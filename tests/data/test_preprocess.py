"""Preprocessing: gray, resize, per-image min-max; constant images give zeros."""

import jax.numpy as jnp
import numpy as np
from PIL import Image

from uadjax.data.preprocess import minmax, preprocess


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
