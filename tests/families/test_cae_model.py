"""Model shapes, dtypes and parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import torch_cae_parameter_count
from uadjax import families
from uadjax.families.cae import CAE


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_cae_shapes_and_parameter_count_match_the_study():
  # Shapes only: traced with jax.eval_shape, nothing compiled or computed.
  model = CAE()
  x = jax.ShapeDtypeStruct((2, 64, 64, 1), jnp.float32)
  variables = jax.eval_shape(
    lambda x: model.init({'params': jax.random.PRNGKey(0)}, x, train=False), x
  )
  assert _count(variables['params']) == torch_cae_parameter_count() == 3_138_305
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert out['reconstruction'].shape == (2, 64, 64, 1)
  # The bottleneck: 2x2x512 after five stride-2 blocks.
  _, state = jax.eval_shape(
    lambda v, x: model.apply(v, x, train=False, capture_intermediates=True, mutable=True),
    variables,
    x,
  )
  enc = state['intermediates']['encoder_4']['__call__'][0]
  assert enc.shape == (2, 2, 2, 512)
  assert 'norm' not in variables['params']['encoder_0']
  assert 'norm' not in variables['params']['decoder_3']
  assert set(variables['batch_stats']) == {f'encoder_{i}' for i in range(1, 5)} | {
    f'decoder_{i}' for i in range(3)
  }


def test_bfloat16_compute_keeps_float32_params_and_output():
  model = CAE(features=(8, 16), dtype=jnp.bfloat16)
  x = jnp.ones((3, 16, 16, 1))
  variables = model.init({'params': jax.random.PRNGKey(0)}, x, train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables['params']))
  out, _ = model.apply(
    variables, x, train=True, rngs={'dropout': jax.random.PRNGKey(1)}, mutable=['batch_stats']
  )
  assert out['reconstruction'].dtype == jnp.float32


def test_registry_names_the_models():
  assert families.get('cae').model is CAE
