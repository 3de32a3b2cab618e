"""The sliced Wasserstein distance that selects the f-AnoGAN generator."""

import jax

from uadjax.evaluation.swd import sliced_wasserstein

SIZE = 16


def _images(n=6, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, SIZE, SIZE, 1))


def test_sliced_wasserstein_zero_for_identical_sets_and_grows_with_a_shift():
  a = _images(16, 0) * 2 - 1
  key = jax.random.PRNGKey(0)
  swd = lambda b: float(sliced_wasserstein(a, b, key, levels=2, patch=5))
  assert swd(a) == 0.0
  small, large = swd(a + 0.1), swd(a + 0.5)
  assert 0 < small < large
  assert swd(_images(16, 1) * 2 - 1) > 0
