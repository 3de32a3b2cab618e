"""f-AnoGAN networks: the parts, their shapes and ranges, and the fundus sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from configs.fundus import fanogan as fanogan_config
from uadjax.families.fanogan.model import FAnoGAN

SIZE, LATENT = 16, 8


def _model(arch='dcgan'):
  return FAnoGAN(arch=arch, latent_dim=LATENT, dim=4, image_size=SIZE)


def _images(n=6, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, SIZE, SIZE, 1))


@pytest.mark.parametrize('arch', ['resnet', 'dcgan'])
def test_shapes_and_ranges(arch):
  model = _model(arch)
  x = _images() * 2 - 1
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  assert set(variables['params']) == {'generator', 'critic', 'encoder'}
  # No BatchNorm in the critic (nor in the encoder, its trunk's twin): per-sample penalty.
  assert set(variables['batch_stats']) == {'generator'}
  apply = jax.jit(model.apply, static_argnames='method')
  z = apply(variables, x, method='encode')
  assert z.shape == (6, LATENT) and jnp.all(jnp.abs(z) < 1)
  g = apply(variables, z, method='generate')
  assert g.shape == x.shape and g.dtype == jnp.float32 and jnp.all(jnp.abs(g) <= 1)
  scores, features = apply(variables, x, method='discriminate')
  assert scores.shape == (6,) and features.shape[0] == 6


def test_fundus_fanogan_networks_scale_to_256_and_two_channels():
  from uadjax.families.fanogan import FAnoGAN

  config = fanogan_config.get_config()
  model = FAnoGAN(**config.model.to_dict())
  x = jnp.zeros((1, 256, 256, 2))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  out = jax.eval_shape(lambda v: model.apply(v, x), shapes)
  assert out['reconstruction'].shape == (1, 256, 256, 2) and out['z'].shape == (1, 128)
  blocks = [k for k in shapes['params']['generator'] if k.startswith('block_')]
  assert len(blocks) == 6  # 4x4 -> 256x256: six x2 stages (four at 64x64)
  # The resnet generator's widths stop at 8d as its critic's do (uncapped it had 124 M
  # parameters against the critic's 17 M).
  assert shapes['params']['generator']['input']['kernel'].shape == (128, 4 * 4 * 8 * 64)
  size = lambda part: sum(x.size for x in jax.tree.leaves(shapes['params'][part]))
  assert size('generator') < 1.2 * size('critic')
