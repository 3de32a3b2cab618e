"""The CAE's task (and the base of the SSAE's and DAGMM's): pure train and score functions.

Score = per-image mean squared reconstruction error; the per-pixel squared residual (mean
over channels) is the anomaly map. The training
loss is the batch mean of that score. The score switches (`task.residual`, `task.reduction`,
`task.mask`, `task.blur`) score the full-resolution reconstruction's map instead.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from uadjax.nn import scores as scores_lib
from uadjax.nn.scores import residual_map
from uadjax.train.state import TrainState, create_train_state
from uadjax.train.task import Batch, Task


@dataclasses.dataclass(frozen=True)
class ReconstructionTask(scores_lib.ScoreSwitches, Task):
  """Training and scoring of a model whose output has a 'reconstruction' of its input.

  The training loss is always the study's (the batch mean of `errors`). The anomaly score is
  the study's too unless one of the score switches is set (`scores_lib.ScoreSwitches`: the
  residual, its reduction, a head or brain mask, a blur), each with the study's value as
  default.

  Attributes:
    model: a Flax module called as `model(images, train=...)`.
    tx: the optax optimiser.
  """

  model: nn.Module
  tx: optax.GradientTransformation

  reconstructs: ClassVar[bool] = True

  def __post_init__(self):
    self.check_score_switches()

  def errors(self, images, outputs):
    """Per-image scores (n,) and per-pixel maps (n, h, w), float32, of the model's outputs."""
    maps = residual_map(images, outputs['reconstruction'])
    return jnp.mean(maps, axis=(1, 2)), maps

  def init(self, key, image_shape) -> TrainState:
    """A fresh state for images of shape (h, w, c)."""
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    variables = self.model.init({'params': key}, dummy, train=False)
    return create_train_state(variables, self.tx)

  def train_step(self, state: TrainState, batch: Batch, key):
    """One optimiser update on a batch; pure (jit, vmap and scan it from outside)."""
    images = batch.images

    def objective(params):
      outputs, updates = self.model.apply(
        {'params': params, 'batch_stats': state.batch_stats},
        images,
        train=True,
        rngs={'dropout': key},
        mutable=['batch_stats'],
      )
      scores, _ = self.errors(images, outputs)
      return jnp.mean(scores), updates

    (loss, updates), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state = state.apply_gradients(self.tx, grads, updates.get('batch_stats', state.batch_stats))
    return new_state, {'loss': loss}

  def score(self, variables, images):
    """Anomaly scores (n,) and maps (n, h, w), float32, evaluation mode."""
    outputs = self.model.apply(variables, images, train=False)
    if self.study_score:
      return self.errors(images, outputs)
    return self.switched_scores(images, outputs['reconstruction'], variables)

  def reconstruct(self, variables, images):
    """The reconstructions, float32 (for figures)."""
    return self.model.apply(variables, images, train=False)['reconstruction']
