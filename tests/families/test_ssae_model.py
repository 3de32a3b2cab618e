"""The SSAE: the Laplacian pyramid, the coarse-to-fine rebuild, shapes and parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import torch_cae_parameter_count
from uadjax import families
from uadjax.families.ssae import SSAE
from uadjax.families.ssae import model as ssae_lib
from uadjax.families.ssae.task import ScaleSpaceTask


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_pyramid_of_a_constant_image_is_flat_with_zero_bands():
  x = jnp.full((2, 32, 32, 1), 0.37)
  targets, bands, top = ssae_lib.laplacian_pyramid(x)
  assert [t.shape[1] for t in targets] == [32, 16, 8] and top.shape == (2, 4, 4, 1)
  for level in (*targets, top):
    np.testing.assert_allclose(level, 0.37, atol=1e-6)
  for band in bands:
    np.testing.assert_allclose(band, 0.0, atol=1e-6)


def test_blur_kernel_is_a_normalised_5x5_gaussian():
  k = ssae_lib.gaussian_kernel()
  assert k.shape == (5, 5) and np.isclose(k.sum(), 1.0) and k[2, 2] == k.max()
  np.testing.assert_allclose(k, k.T)


def test_identity_autoencoders_rebuild_the_image_exactly():
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 32, 32, 1))
  targets, bands, top = ssae_lib.laplacian_pyramid(x)
  recons = ssae_lib.rebuild(bands, top, [lambda b: b] * 3)
  for t, r in zip(targets, recons, strict=True):
    np.testing.assert_allclose(r, t, atol=1e-5)


def test_shapes_and_parameter_counts_of_the_three_autoencoders():
  model = SSAE()
  x = jnp.zeros((2, 64, 64, 1))
  variables = jax.eval_shape(lambda: model.init({'params': jax.random.PRNGKey(0)}, x, train=False))
  params = variables['params']
  assert set(params) == {'band_0', 'band_1', 'band_2'}
  # Each band's autoencoder is the study's CAE with (32..512), (32..256), (32..128) channels
  # (see tests/helpers.py for the CAE's count against the PyTorch model).
  channels = ((32, 64, 128, 256, 512), (32, 64, 128, 256), (32, 64, 128))
  for k, c in enumerate(channels):
    assert _count(params[f'band_{k}']) == torch_cae_parameter_count(c)
  assert _count(params) == 3_138_305 + 776_705 + 185_729
  out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert [r.shape for r in out['reconstructions']] == [
    (2, 64, 64, 1),
    (2, 32, 32, 1),
    (2, 16, 16, 1),
  ]
  assert [t.shape for t in out['targets']] == [r.shape for r in out['reconstructions']]
  assert all(r.dtype == jnp.float32 for r in out['reconstructions'])
  assert out['reconstruction'].shape == (2, 64, 64, 1)


def test_registries_name_the_ssae():
  assert families.get('ssae').model is SSAE and families.get('ssae').task is ScaleSpaceTask
