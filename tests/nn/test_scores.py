"""Score variants (uadjax.nn.scores) against hand-computed values."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from uadjax.nn import scores


def test_mean_and_topk_of_a_fixed_map_equal_the_hand_computed_values():
  # 2x5 map: values 0..9; the mask keeps the last 6 (4..9).
  maps = jnp.arange(10, dtype=jnp.float32).reshape(1, 2, 5)
  mask = jnp.array([[[False, False, False, False, True], [True, True, True, True, True]]])
  assert float(scores.reduce_map(maps, None, 'mean')[0]) == pytest.approx(4.5)
  assert float(scores.reduce_map(maps, mask, 'mean')[0]) == pytest.approx(
    (4 + 5 + 6 + 7 + 8 + 9) / 6
  )
  # top 20 % of 10 pixels = the 2 largest: (9 + 8) / 2; of the 6 masked: ceil(1.2) = 2 as well.
  assert float(scores.reduce_map(maps, None, 'topk', 0.2)[0]) == pytest.approx(8.5)
  # top 50 % of the 6 masked pixels: 9, 8, 7.
  assert float(scores.reduce_map(maps, mask, 'topk', 0.5)[0]) == pytest.approx(8.0)
  # At least one pixel, whatever the fraction.
  assert float(scores.reduce_map(maps, None, 'topk', 1e-6)[0]) == pytest.approx(9.0)


def test_ssim_residual_is_zero_for_a_perfect_reconstruction_and_positive_otherwise():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(2, 16, 16, 1)), jnp.float32)
  same = scores.ssim_map(x, x)
  assert float(jnp.max(jnp.abs(same))) < 1e-5
  other = scores.ssim_map(x, jnp.clip(x + 0.2 * jnp.asarray(rng.normal(size=x.shape)), 0, 1))
  assert float(jnp.mean(other)) > 0.05


def test_blur_keeps_a_constant_map_and_spreads_a_spike():
  flat = jnp.full((1, 9, 9), 3.0)
  np.testing.assert_allclose(scores.gaussian_blur(flat, 1.0), flat, rtol=1e-5)
  spike = jnp.zeros((1, 9, 9)).at[0, 4, 4].set(1.0)
  blurred = scores.gaussian_blur(spike, 1.0)
  assert float(jnp.sum(blurred)) == pytest.approx(1.0, rel=1e-4)
  assert float(blurred[0, 4, 4]) < 0.2 and float(blurred[0, 4, 5]) > 0.05
