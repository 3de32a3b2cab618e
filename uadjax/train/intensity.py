"""The intensity baseline's task: no gradient, a band of intensities chosen without test data.

Score: the fraction of an image's brain pixels whose intensity lies in [lo, 1] (for head CT,
the hyperdense band of fresh blood, brighter than normal brain tissue); map: those pixels.

Choosing lo uses only what the protocol allows: "training" accumulates the histogram of the
training normals' brain pixels (normal images only, as every model here), and epoch e sets lo
to its `percentiles[e]` (the last one thereafter). The protocol validates every epoch and keeps
the epoch with the best validation AUC, so the band is chosen on the training normals and the
validation images, and applied once to the test set, like any checkpoint. The config trains
len(percentiles) epochs with validation every epoch.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import optax

from uadjax.train.state import TrainState, create_train_state
from uadjax.train.task import Batch, Task

# Percentiles of the normal brain pixels tried as the band's lower edge, one an epoch. Chosen
# on validation AUC alone (mean over the 10 head-CT iterations, `--config.task.percentiles`):
# of 50, 70, 80, 90, 95, 97.5, 99, 99.5 and 99.9 the 90th was best (0.738; 80th 0.714, 95th
# 0.559); this grid brackets it.
PERCENTILES = (80.0, 85.0, 90.0, 92.5, 95.0)


@dataclasses.dataclass(frozen=True)
class IntensityTask(Task):
  """Training (histogram, band) and scoring of `uadjax.models.IntensityHistogram`.

  Attributes:
    model: the IntensityHistogram module.
    tx: unused (nothing is optimised); kept for the task contract.
    percentiles: the candidate lower edges, one an epoch.
    steps_per_epoch: optimiser steps in an epoch (set by the protocol): which candidate a step
      belongs to.
  """

  model: nn.Module
  tx: optax.GradientTransformation
  percentiles: tuple = PERCENTILES
  steps_per_epoch: int = 1

  def init(self, key, image_shape) -> TrainState:
    """lo = 1 (nothing in the band) and an empty histogram."""
    del key, image_shape
    params = {'lo': jnp.ones((), jnp.float32)}
    state = create_train_state({'params': params}, self.tx)
    return state.replace(batch_stats={'histogram': jnp.zeros(self.model.bins, jnp.float32)})

  def train_step(self, state: TrainState, batch: Batch, key):
    """Adds the batch's brain pixels to the histogram; lo = the epoch's percentile of it."""
    del key
    images = batch.images
    hist = state.batch_stats['histogram'] + jnp.sum(self.model.apply({}, images)['histogram'], 0)
    epoch = jnp.minimum(state.step // self.steps_per_epoch, len(self.percentiles) - 1)
    q = jnp.asarray(self.percentiles, jnp.float32)[epoch] / 100.0
    cdf = jnp.cumsum(hist) / jnp.maximum(jnp.sum(hist), 1.0)
    lo = (jnp.searchsorted(cdf, q) + 1).astype(jnp.float32) / self.model.bins  # bin's upper edge
    new = state.replace(step=state.step + 1, params={'lo': lo}, batch_stats={'histogram': hist})
    return new, {'loss': jnp.zeros((), jnp.float32)}

  def score(self, variables, images):
    """Fraction of brain pixels at or above lo (n,), and those pixels (n, h, w), float32."""
    out = self.model.apply({}, images)
    band = (out['intensity'] >= variables['params']['lo']) & out['brain']
    count = jnp.maximum(jnp.sum(out['brain'], axis=(1, 2)), 1)
    return jnp.sum(band, axis=(1, 2)) / count, band.astype(jnp.float32)
