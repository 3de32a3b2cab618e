"""Train steps and the epoch engine: learning, single compilation, parallel == sequential."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from tests.conftest import tiny_config
from uadjax import cv
from uadjax.data import phantoms
from uadjax.train import make_task


def test_loss_falls_on_a_fixed_batch():
  config = tiny_config('phantoms')
  config.model.dropout = 0.0
  config.optimizer.learning_rate = 2e-3  # the study's 2e-4 needs hundreds of steps
  task = make_task(config)
  state = task.init(jax.random.PRNGKey(0), (32, 32, 1))
  images = jnp.asarray(phantoms.make_phantoms(10, 0, 32)[0])
  step = jax.jit(task.train_step)
  losses = []
  for i in range(40):
    state, m = step(state, images, jax.random.PRNGKey(i))
    losses.append(float(m['loss']))
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
  assert int(state.step) == 40


def test_train_step_compiles_once():
  task = make_task(tiny_config('phantoms'))
  state = task.init(jax.random.PRNGKey(0), (32, 32, 1))
  images = jnp.zeros((10, 32, 32, 1))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(state, images, key):
    return task.train_step(state, images, key)

  for i in range(3):
    state, _ = step(state, images, jax.random.PRNGKey(i))


def test_scores_are_per_image_mse():
  task = make_task(tiny_config('phantoms'))
  state = task.init(jax.random.PRNGKey(0), (32, 32, 1))
  images = jnp.asarray(np.random.default_rng(1).random((4, 32, 32, 1)), jnp.float32)
  scores, maps = task.score(state.variables, images)
  recon = task.reconstruct(state.variables, images)
  np.testing.assert_allclose(scores, np.mean((images - recon) ** 2, axis=(1, 2, 3)), rtol=1e-5)
  assert maps.shape == (4, 32, 32) and scores.dtype == jnp.float32


def _train_all(protocol, parallel, iterations):
  engine = protocol.engine
  images = jnp.asarray(protocol.dataset.images)
  carries = [protocol.initial_carry(i) for i in iterations]
  folds = [protocol.fold_data(i) for i in iterations]
  if parallel:
    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack([jnp.asarray(a) for a in x]), *trees)
    carry, logs = engine.compiled_train(2, True)(stack(carries), stack(folds), images)
    return [jax.tree.map(lambda x, i=i: np.asarray(x[i]), (carry, logs)) for i in range(2)]
  out = []
  for carry, fold in zip(carries, folds, strict=True):
    carry, logs = engine.compiled_train(2, False)(carry, jax.tree.map(jnp.asarray, fold), images)
    out.append(jax.tree.map(np.asarray, (carry, logs)))
  return out


def test_fold_parallel_equals_sequential_with_uneven_splits():
  # 23 normals: folds of 5 and 4 images, so training sets differ in size and step counts.
  # With batch 5, iteration 0 trains on 15 images (3 steps an epoch), iteration 2 on 14 (2).
  config = tiny_config('phantoms', **{'data.phantoms.n_normal': 23, 'train.batch_size': 5})
  protocol = cv.Protocol(config)
  assert [len(protocol.splits[i].train) for i in (0, 2)] == [15, 14]
  assert not protocol.engine.uniform_steps
  parallel = _train_all(protocol, True, [0, 2])
  sequential = _train_all(protocol, False, [0, 2])
  for (pc, pl), (sc, sl) in zip(parallel, sequential, strict=True):
    np.testing.assert_allclose(pl['train_loss'], sl['train_loss'], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pl['val_auc'], sl['val_auc'], atol=1e-6)
    # Biases before a BatchNorm get ~zero gradients, whose float noise Adam normalises to
    # lr-sized steps: parameters agree to a few learning rates (2e-4 each), not to 1e-6.
    chex.assert_trees_all_close(pc.state.params, sc.state.params, atol=2e-3)
    assert int(pc.epoch) == 4
