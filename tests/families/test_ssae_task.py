"""The SSAE task: the multi-scale score and a learning step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import make_config
from uadjax.families import make_task
from uadjax.train.task import Batch


def test_score_is_the_weighted_sum_of_the_scales_mse_and_the_map_is_full_size():
  task = make_task(make_config('configs/headct/ssae.py:tiny', **{'task.weights': (1.0, 2.0, 0.5)}))
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (32, 32, 1))
  x = jax.random.uniform(jax.random.PRNGKey(1), (4, 32, 32, 1))
  scores, maps = jax.jit(task.score)(state.variables, x)
  out = jax.jit(functools.partial(task.model.apply, train=False))(state.variables, x)
  expected = sum(
    w * jnp.mean(jnp.square(t - r), axis=(1, 2, 3))
    for w, t, r in zip((1.0, 2.0, 0.5), out['targets'], out['reconstructions'], strict=True)
  )
  np.testing.assert_allclose(scores, expected, rtol=1e-5)
  assert maps.shape == (4, 32, 32) and maps.dtype == jnp.float32 and bool(jnp.all(maps >= 0))


def test_loss_falls_on_a_fixed_batch():
  task = make_task(make_config('configs/headct/ssae.py:tiny'))
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (32, 32, 1))
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 1))
  step = jax.jit(task.train_step)
  losses = []
  for i in range(30):
    state, m = step(state, Batch.of(x), jax.random.PRNGKey(i))
    losses.append(float(m['loss']))
  assert np.mean(losses[-5:]) < 0.9 * losses[0]
