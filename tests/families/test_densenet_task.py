"""The classifier task (DenseNet on the fundus sets): the weighted loss and a learning step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from uadjax.families.densenet import DenseNet
from uadjax.families.densenet import task as classifier
from uadjax.train.task import Batch


def test_weighted_cross_entropy_is_torchs_weighted_mean():
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  labels = jnp.array([0, 1, 1])
  class_weights = jnp.array([0.5, 2.0])
  w = class_weights[labels]  # each sample's class weight
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  nll = -np.log(p[np.arange(3), labels])
  expected = (0.5 * nll[0] + 2 * nll[1] + 2 * nll[2]) / (0.5 + 2 + 2)
  assert float(classifier.weighted_cross_entropy(logits, labels, w)) == pytest.approx(expected)
  masked = classifier.weighted_cross_entropy(logits, labels, w, jnp.array([True, True, False]))
  assert float(masked) == pytest.approx((0.5 * nll[0] + 2 * nll[1]) / 2.5)
  # The validation loss recomputed from P(class 1) equals the loss of the logits.
  scores = jax.nn.softmax(logits)[:, 1]
  task = classifier.ClassifierTask(model=None, tx=None)
  loss = task.validation_loss(scores, labels, jnp.ones(3, bool), class_weights)
  assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_classifier_step_learns_a_fixed_batch():
  model = DenseNet(growth_rate=4, block_config=(1, 1), num_init_features=8)
  task = classifier.ClassifierTask(model=model, tx=optax.adam(1e-2))
  state = jax.jit(task.init, static_argnums=1)(jax.random.PRNGKey(0), (32, 32, 3))
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 3))
  y = jnp.array([0, 1] * 4)
  x = x.at[y == 1, :8, :8].set(1.0)  # class 1 carries a bright corner
  step = jax.jit(lambda s, k: task.train_step(s, Batch.of(x, labels=y), k))
  losses = []
  for i in range(25):
    state, m = step(state, jax.random.PRNGKey(i))
    losses.append(float(m['loss']))
  assert losses[-1] < 0.5 * losses[0]
  p, maps = task.score(state.variables, x)
  assert maps.shape == (8, 32, 32) and ((p >= 0.5) == (y == 1)).all()
  with pytest.raises(ValueError, match='RGB'):
    task.inputs(jnp.zeros((1, 8, 8, 2)))
