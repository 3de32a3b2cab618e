"""The DAGMM task: finite bfloat16 training, the mixture fitted on the masked training set."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import make_config
from uadjax.families import make_task
from uadjax.families.dagmm import model as dagmm_lib
from uadjax.train.task import Batch


def test_bfloat16_training_keeps_every_loss_and_score_finite():
  config = make_config(
    'configs/headct/dagmm.py:tiny', **{'train.dtype': 'bfloat16', 'model.features': (8, 16)}
  )
  task = make_task(config)
  assert task.model.dtype == jnp.bfloat16
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (16, 16, 1))
  images = jax.random.uniform(jax.random.PRNGKey(1), (40, 16, 16, 1))

  @jax.jit
  def run(state):
    def step(state, i):
      batch = jax.lax.dynamic_slice_in_dim(images, (i % 4) * 10, 10)
      state, metrics = task.train_step(state, Batch.of(batch), jax.random.PRNGKey(i))
      return state, metrics['loss']

    return jax.lax.scan(step, state, jnp.arange(300))

  state, losses = run(state)
  assert bool(jnp.all(jnp.isfinite(losses))), losses
  idx = jnp.arange(40)
  variables = jax.jit(task.fit_scorer)(state.variables, images, idx, idx < 35)
  scores, maps = jax.jit(task.score)(variables, images)
  assert scores.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(scores)))
  assert bool(jnp.all(jnp.isfinite(maps)))


def test_fit_scorer_fits_the_mixture_on_the_masked_training_set():
  task = make_task(make_config('configs/headct/dagmm.py:tiny'))
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (32, 32, 1))
  images = jax.random.uniform(jax.random.PRNGKey(1), (25, 32, 32, 1))
  idx = jnp.arange(25)[::-1]
  mask = jnp.arange(25) < 17  # 17 is not a multiple of fit_batch: padding inside
  fitted = jax.jit(task.fit_scorer)(state.variables, images, idx, mask)
  net = {'params': state.params, 'batch_stats': {}}
  net['batch_stats'] = {k: v for k, v in state.batch_stats.items() if k != 'mixture'}
  out = jax.jit(functools.partial(task.model.apply, train=False))(net, images[idx[:17]])
  phi, mu, sigma = jax.jit(dagmm_lib.fit_mixture)(out['z'], out['gamma'])
  m = fitted['batch_stats']['mixture']
  np.testing.assert_allclose(m['phi'], phi, rtol=1e-4)
  np.testing.assert_allclose(m['mu'], mu, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(m['sigma'], sigma, rtol=1e-3, atol=1e-7)
  # Scoring reads the stored mixture.
  e, _ = jax.jit(task.score)(fitted, images[idx[:17]])
  energy = jax.jit(dagmm_lib.energy)(out['z'], phi, mu, sigma)
  np.testing.assert_allclose(e, energy, rtol=1e-4, atol=1e-4)
