"""PaDiM (Defard et al. 2021): a Gaussian per patch position over a seeded subset of channels of a
frozen pretrained backbone's features; score: the largest patch distance. The shared feature
pass, grid and masks: `uadjax.train.features.FeatureTask`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from absl import logging

from uadjax.nn import statistics
from uadjax.train.features import FeatureTask
from uadjax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class PaDiMTask(FeatureTask):
  """A Gaussian per cell over `channels` channels drawn once with `channel_seed` (PaDiM).

  Attributes:
    channels: channels kept (PaDiM's random subset: its covariances are channels^2 a cell).
    channel_seed: the seed of the subset (the same in every iteration and on a rerun).
  """

  channels: int = 100
  channel_seed: int = 0

  def _subset(self, total: int) -> np.ndarray:
    rng = np.random.default_rng(self.channel_seed)
    return np.sort(rng.choice(total, min(self.channels, total), replace=False))

  def embed(self, variables, images):
    """{'patches': (n, g*g, channels), 'inside': (n, g*g)}."""
    grid, inside = self.grid_features(variables, images)
    n = grid.shape[0]
    patches = grid[..., self._subset(grid.shape[-1])]
    return {'patches': patches.reshape(n, -1, patches.shape[-1]), 'inside': inside.reshape(n, -1)}

  def init(self, key, image_shape) -> TrainState:
    """Zero means (g*g, channels) and precisions (g*g, channels, channels)."""
    del key
    _, cells, d = self._shapes(image_shape)['patches'].shape
    zeros = {
      'mean': jnp.zeros((cells, d), jnp.float32),
      'precision': jnp.zeros((cells, d, d), jnp.float32),
    }
    return self._state(zeros)

  def fit(self, key, features) -> list:
    """A Ledoit-Wolf Gaussian per cell over the training normals (one candidate)."""
    del key
    per_cell = np.swapaxes(np.asarray(features['patches']), 0, 1)  # (cells, n, d)
    mean, precision, shrinkage = statistics.ledoit_wolf(per_cell)
    logging.info(
      'Ledoit-Wolf shrinkage %.3f on average over %d cells.', np.mean(shrinkage), len(mean)
    )
    params = {'mean': mean.astype(np.float32), 'precision': precision.astype(np.float32)}
    return [('Ledoit-Wolf Gaussian per cell', {'params': params})]

  def _cells(self, variables, features):
    p = variables['params']
    return statistics.mahalanobis(features['patches'], p['mean'], p['precision'])

  def score_embedded(self, variables, features):
    """Scores (n,) from `embed`'s features (the same as `score`'s)."""
    return jnp.max(self._cells(variables, features) * features['inside'], axis=1)

  def score(self, variables, images):
    """Scores (n,) and anomaly maps (n, h, w) of images."""
    features = self.embed(variables, images)
    cells = self._cells(variables, features) * features['inside']
    side = int(round(cells.shape[1] ** 0.5))
    return jnp.max(cells, axis=1), self.to_map(cells.reshape(-1, side, side), images)
