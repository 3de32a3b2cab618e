"""Train steps and the epoch engine: learning, single compilation, parallel == sequential, one
program per run shape (initial state, training calls of any length, scoring of any set)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import TINY_CAE, make_config
from uadjax import protocol as protocol_lib
from uadjax.data import phantoms
from uadjax.families import make_task
from uadjax.train.loop import Engine, initial_carry, score_all, score_parts_all
from uadjax.train.task import Batch


def test_loss_falls_on_a_fixed_batch():
  config = make_config(TINY_CAE)
  config.model.dropout = 0.0
  config.optimizer.learning_rate = 2e-3  # the study's 2e-4 needs hundreds of steps
  task = make_task(config)
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (32, 32, 1))
  images = jnp.asarray(phantoms.make_phantoms(10, 0, 32)[0])
  step = jax.jit(task.train_step)
  losses = []
  for i in range(40):
    state, m = step(state, Batch.of(images), jax.random.PRNGKey(i))
    losses.append(float(m['loss']))
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
  assert int(state.step) == 40


def test_train_step_compiles_once():
  task = make_task(make_config(TINY_CAE))
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (32, 32, 1))
  images = jnp.zeros((10, 32, 32, 1))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(state, images, key):
    return task.train_step(state, Batch.of(images), key)

  for i in range(3):
    state, _ = step(state, images, jax.random.PRNGKey(i))


def test_scores_are_per_image_mse():
  task = make_task(make_config(TINY_CAE))
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (32, 32, 1))
  images = jnp.asarray(np.random.default_rng(1).random((4, 32, 32, 1)), jnp.float32)
  scores, maps = jax.jit(task.score)(state.variables, images)
  recon = jax.jit(task.reconstruct)(state.variables, images)
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
  config = make_config(TINY_CAE, **{'data.phantoms.n_normal': 23, 'train.batch_size': 5})
  protocol = protocol_lib.Protocol(config)
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


def _equal(a, b) -> bool:
  return jax.tree.all(jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b))


def test_initial_carry_is_one_program_with_the_eager_values():
  protocol = protocol_lib.Protocol(make_config(TINY_CAE))
  engine, key = protocol.engine, jax.random.PRNGKey(3)
  carry = engine.initial_carry(key, protocol.image_shape)
  # One program (at the tests' level, tests/conftest.py): bit for bit what the operations give
  # one by one.
  assert _equal(carry, initial_carry(protocol.task.init(key, protocol.image_shape)))
  fn = engine.compiled[('init', protocol.image_shape)]
  engine.initial_carry(jax.random.PRNGKey(4), protocol.image_shape)
  assert fn._cache_size() == 1
  # Its buffers can be donated to the training call (no leaf shares another's buffer).
  fold = jax.tree.map(jnp.asarray, protocol.fold_data(0))
  engine.compiled_train(1, False)(carry, fold, jnp.asarray(protocol.dataset.images))


def test_a_shorter_last_call_runs_the_program_of_the_full_ones():
  # The in-program validation's call (fold-parallel here: one iteration, stacked).
  protocol = protocol_lib.Protocol(make_config(TINY_CAE))
  engine = protocol.engine
  images = jnp.asarray(protocol.dataset.images)
  stack = lambda tree: jax.tree.map(lambda x: jnp.asarray(x)[None], tree)
  fold = stack(protocol.fold_data(0))
  fresh = jax.tree.map(np.asarray, protocol.initial_carry(0))
  full = engine.compiled_train(2, True)
  carry, logs = full(stack(fresh), fold, images)
  assert logs['val_auc'].shape == (1, 2) and logs['train_loss'].shape == (1, 2, 2)
  short = engine.compiled_train(1, True)
  assert short.jitted is full.jitted and short.capacity == 2
  carry, logs = short(carry, fold, images)
  assert logs['val_auc'].shape == (1, 1) and int(carry.epoch[0]) == 6
  assert full.jitted._cache_size() == 1
  # The same values as a program compiled for the shorter count, from the same state.
  carry2, logs2 = full(stack(fresh), fold, images)
  exact = Engine(
    engine.task,
    engine.augment,
    engine.batch_size,
    engine.steps_per_epoch,
    engine.uniform_steps,
    engine.val_every,
    engine.selection,
    engine.score_batch,
  ).compiled_train(1, True)
  assert exact.capacity == 1
  assert _equal(exact(carry2, fold, images), jax.tree.map(np.asarray, (carry, logs)))
  # One iteration of a task that validates inside (DAGMM, a GAN phase): the same program for a
  # shorter call, its logs cut to the count.
  engine.validates_between_calls = lambda parallel: False
  fold = jax.tree.map(jnp.asarray, protocol.fold_data(0))
  full = engine.compiled_train(2, False)
  carry, logs = full(jax.tree.map(jnp.asarray, fresh), fold, images)
  short = engine.compiled_train(1, False)
  assert short.jitted is full.jitted and short.capacity == 2
  carry, logs = short(carry, fold, images)
  assert logs['val_auc'].shape == (1,) and logs['train_loss'].shape == (1, 2)
  assert int(carry.epoch) == 6


def test_one_iteration_validates_with_the_test_sets_program():
  protocol = protocol_lib.Protocol(make_config(TINY_CAE))
  engine = protocol.engine
  assert engine.validates_between_calls(False) and not engine.validates_between_calls(True)
  images = jnp.asarray(protocol.dataset.images)
  fold = jax.tree.map(jnp.asarray, protocol.fold_data(0))
  fresh = jax.tree.map(np.asarray, protocol.initial_carry(0))
  call = engine.compiled_train(2, False)
  carry, logs = call(jax.tree.map(jnp.asarray, fresh), fold, images)
  assert logs['val_auc'].shape == (2,) and logs['train_loss'].shape == (2, 2)
  assert list(logs['epoch']) == [2, 4] and int(carry.epoch) == 4
  # What the validation inside the training program gives (same epochs, same draws).
  inside = jax.jit(lambda c, f, i: engine.train(c, f, i, 2))
  carry_in, logs_in = inside(jax.tree.map(jnp.asarray, fresh), fold, images)
  np.testing.assert_allclose(logs['train_loss'], logs_in['train_loss'], rtol=1e-6)
  np.testing.assert_allclose(logs['val_auc'], logs_in['val_auc'], atol=1e-6)
  np.testing.assert_allclose(logs['val_loss'], logs_in['val_loss'], rtol=1e-5)
  assert int(carry.best_epoch) == int(carry_in.best_epoch) > 0
  chex.assert_trees_all_close(carry.best, carry_in.best, atol=1e-6)
  # The best variables are a copy: another call (which donates the carry and, with a metric
  # nothing beats, keeps them) leaves them as they were.
  best = jax.tree.map(np.asarray, carry.best)
  carry, _ = call(carry.replace(best_metric=jnp.asarray(np.inf, jnp.float32)), fold, images)
  assert int(carry.epoch) == 8 and int(carry.best_epoch) == int(carry_in.best_epoch)
  chex.assert_trees_all_equal(jax.tree.map(np.asarray, carry.best), best)
  # One program trains, the test set's program validates, a small one keeps the best.
  score_all(engine, carry.best, images, protocol.splits[0].test)
  assert engine.compiled_epochs()._cache_size() == 1
  assert engine.compiled_outputs()._cache_size() == 1
  assert engine.compiled_select()._cache_size() == 1
  assert not any(k[0] == 'train' for k in engine.compiled if isinstance(k, tuple))


def test_sets_of_any_size_score_in_one_program():
  protocol = protocol_lib.Protocol(make_config(TINY_CAE))
  engine = protocol.engine
  images = jnp.asarray(protocol.dataset.images)
  variables = protocol.initial_carry(0).best
  split = protocol.splits[0]
  # 9, 5 and 30 images: under, under and over score_batch (16), the last batch padded.
  for indices in (split.val, split.test[:5], np.arange(len(images))):
    scores, maps = score_all(engine, variables, images, indices)
    direct, direct_maps = jax.jit(protocol.task.score)(variables, images[jnp.asarray(indices)])
    np.testing.assert_allclose(scores, direct, rtol=1e-6)
    assert maps.shape == direct_maps.shape
  assert engine.compiled_outputs()._cache_size() == 1


def test_score_parts_of_any_set_in_one_program():
  from configs.headct import fanogan

  protocol = protocol_lib.Protocol(fanogan.get_config('tiny,phantoms'))
  engine = protocol.engine
  images = jnp.asarray(protocol.dataset.images)
  variables = protocol.initial_carry(0).best
  for indices in (protocol.splits[0].test, np.arange(len(images))):
    parts = score_parts_all(engine, variables, images, indices)
    direct = jax.jit(protocol.task.score_parts)(variables, images[jnp.asarray(indices)])
    assert set(parts) == set(direct) == {'image', 'feature'}
    for k in parts:
      np.testing.assert_allclose(parts[k], direct[k], rtol=1e-5, atol=1e-7)
  assert engine.compiled['score_parts']._cache_size() == 1


def test_a_labelled_batched_pass_logs_its_progress(monkeypatch, caplog):
  import logging
  import types

  from uadjax.train import loop

  clock = iter(range(0, 10_000, 40))  # each reading of the clock 40 s after the last
  monkeypatch.setattr(loop, 'time', types.SimpleNamespace(time=lambda: next(clock)))
  engine = types.SimpleNamespace(score_batch=2)
  double = lambda variables, x: {'y': 2 * x}  # noqa: E731
  with caplog.at_level(logging.INFO):
    out = loop.in_batches(engine, double, {}, np.arange(10.0), np.arange(5), progress='Features')
  np.testing.assert_array_equal(out['y'], 2 * np.arange(5.0))
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Features:')]
  assert lines == [
    'Features: 2/5 images, about 120 s left.',
    'Features: 4/5 images, about 30 s left.',
  ]
  caplog.clear()
  loop.in_batches(engine, double, {}, np.arange(10.0), np.arange(5))
  assert not caplog.records
