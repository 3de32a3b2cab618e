"""The training state: a plain pytree, so it can be vmapped, scanned, sharded and checkpointed."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
  """Everything a train step updates. The optimiser and the model stay outside (closures).

  Attributes:
    step: number of optimiser updates so far (int32 scalar).
    params: model parameters (float32).
    batch_stats: BatchNorm running statistics ({} for models without BatchNorm).
    opt_state: the optax state.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self) -> dict:
    """The variables `model.apply` takes in evaluation mode."""
    return {'params': self.params, 'batch_stats': self.batch_stats}

  def apply_gradients(self, tx: optax.GradientTransformation, grads, batch_stats) -> TrainState:
    """One optimiser update of all `params` with `grads`; the new `batch_stats`; step + 1."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    return self.replace(
      step=self.step + 1,
      params=optax.apply_updates(self.params, updates),
      batch_stats=batch_stats,
      opt_state=opt_state,
    )


def create_train_state(variables: dict, tx: optax.GradientTransformation) -> TrainState:
  """A fresh state from `model.init` output."""
  params = variables['params']
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=variables.get('batch_stats', {}),
    opt_state=tx.init(params),
  )


def make_optimizer(config) -> optax.GradientTransformation:
  """The optimiser `config.optimizer` names (study: Adam, lr 2e-4, betas (0.5, 0.999))."""
  c = config
  if c.name == 'adam':
    tx = optax.adam(c.learning_rate, b1=c.b1, b2=c.b2)
  elif c.name == 'sgd':
    tx = optax.sgd(c.learning_rate, momentum=c.get('momentum', None))
  elif c.name == 'rmsprop':
    tx = optax.rmsprop(c.learning_rate)
  else:
    raise ValueError(f"optimizer.name={c.name!r}; expected 'adam', 'sgd' or 'rmsprop'.")
  if c.get('clip_norm', None):
    tx = optax.chain(optax.clip_by_global_norm(c.clip_norm), tx)
  return tx
