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


SCHEDULES = ('constant', 'cosine')


def learning_rate(config, steps_per_epoch: int = 1, epochs: int | None = None):
  """`optimizer.learning_rate`, or with `optimizer.schedule='cosine'` a schedule: linear warm-up
  over `optimizer.warmup_epochs`, then cosine decay to `optimizer.final_fraction` of the rate at
  the last of `epochs` (the run's `train.epochs`) x `steps_per_epoch` optimiser steps."""
  c = config
  schedule = c.get('schedule', 'constant')
  if schedule == 'constant':
    return c.learning_rate
  if schedule != 'cosine':
    raise ValueError(f'optimizer.schedule={schedule!r}; expected one of {SCHEDULES}.')
  total = max(1, int(epochs or 1) * int(steps_per_epoch))
  warmup = min(total - 1, int(c.get('warmup_epochs', 0)) * int(steps_per_epoch))
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0 if warmup else c.learning_rate,
    peak_value=c.learning_rate,
    warmup_steps=warmup,
    decay_steps=total,
    end_value=c.learning_rate * c.get('final_fraction', 0.0),
  )


def make_optimizer(
  config, steps_per_epoch: int = 1, epochs: int | None = None
) -> optax.GradientTransformation:
  """The optimiser `config.optimizer` names (study: Adam, lr 2e-4, betas (0.5, 0.999)).

  Optional fields, the study's values by default: `schedule` ('constant' | 'cosine', see
  `learning_rate`), `weight_decay` (decoupled, AdamW; 0), `clip_norm` (none).
  """
  c = config
  lr = learning_rate(c, steps_per_epoch, epochs)
  weight_decay = c.get('weight_decay', 0.0)
  if c.name == 'adam':
    if weight_decay:
      tx = optax.adamw(lr, b1=c.b1, b2=c.b2, weight_decay=weight_decay)
    else:
      tx = optax.adam(lr, b1=c.b1, b2=c.b2)
  elif c.name == 'sgd':
    tx = optax.sgd(lr, momentum=c.get('momentum', None))
  elif c.name == 'rmsprop':
    tx = optax.rmsprop(lr)
  else:
    raise ValueError(f"optimizer.name={c.name!r}; expected 'adam', 'sgd' or 'rmsprop'.")
  if weight_decay and c.name != 'adam':
    tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
  if c.get('clip_norm', None):
    tx = optax.chain(optax.clip_by_global_norm(c.clip_norm), tx)
  return tx
