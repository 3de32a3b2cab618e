"""PatchCore (Roth et al. 2022): a memory bank of training patches of a frozen pretrained backbone,
subsampled by a greedy coreset; patch score: the distance to the nearest bank patch; image score:
the mean of the `top` largest, `top` chosen on validation. The shared feature pass, grid and
masks: `uadjax.train.features.FeatureTask`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from uadjax.nn import statistics
from uadjax.train.features import FeatureTask
from uadjax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class PatchCoreTask(FeatureTask):
  """A coreset memory bank of training patches; patch score: the distance to the nearest bank
  patch; image score: the mean of the `top` largest patch scores (PatchCore's is the largest).

  Attributes:
    memory: patches in the bank (a greedy k-center coreset of the training normals' patches
      inside the region; all of them, repeated to this size, when there are fewer).
    neighbourhood: each cell's feature is the mean over this square of cells (PatchCore's
      local aggregation).
    top: candidates for the number of largest patch scores averaged, chosen on validation.
    projection: dimensions of the coreset's random projection.
  """

  memory: int = 2000
  neighbourhood: int = 3
  top: tuple = (1, 5, 20)
  projection: int = 128

  def embed(self, variables, images):
    """{'patches': (n, g*g, D), 'inside': (n, g*g)}, each cell averaged over its neighbours."""
    grid, inside = self.grid_features(variables, images)
    k = self.neighbourhood
    if k > 1:
      grid = nn.avg_pool(grid, (k, k), strides=(1, 1), padding='SAME', count_include_pad=False)
    n, d = grid.shape[0], grid.shape[-1]
    return {'patches': grid.reshape(n, -1, d), 'inside': inside.reshape(n, -1)}

  def init(self, key, image_shape) -> TrainState:
    """A zero bank (memory, D) and top."""
    del key
    d = self._shapes(image_shape)['patches'].shape[-1]
    zeros = {'bank': jnp.zeros((self.memory, d), jnp.float32), 'top': jnp.zeros((), jnp.float32)}
    return self._state(zeros)

  def fit(self, key, features) -> list:
    """The coreset bank of the training normals' patches; one candidate per `top`."""
    points = self.bank_points(features)
    if len(points) <= self.memory:
      bank = points[np.arange(self.memory) % len(points)]
    else:
      chosen = _coreset(jnp.asarray(points), self.memory, key, self.projection)
      bank = points[np.asarray(chosen)]
    bank = bank.astype(np.float32)
    return [
      (f'top {t}', {'params': {'bank': bank, 'top': np.asarray(t, np.float32)}}) for t in self.top
    ]

  def _cells(self, variables, features):
    patches = features['patches']
    n, cells, d = patches.shape
    nearest = statistics.nearest_distances(patches.reshape(-1, d), variables['params']['bank'])
    return nearest.reshape(n, cells) * features['inside']

  def _image_scores(self, variables, cells):
    ranked = -jnp.sort(-cells, axis=1)
    top = variables['params']['top']
    keep = jnp.arange(cells.shape[1]) < top
    return jnp.sum(jnp.where(keep, ranked, 0.0), axis=1) / jnp.maximum(top, 1.0)

  def score_embedded(self, variables, features):
    """Scores (n,) from `embed`'s features (the same as `score`'s)."""
    return self._image_scores(variables, self._cells(variables, features))

  def score(self, variables, images):
    """Scores (n,) and anomaly maps (n, h, w) of images."""
    cells = self._cells(variables, self.embed(variables, images))
    side = int(round(cells.shape[1] ** 0.5))
    maps = self.to_map(cells.reshape(-1, side, side), images)
    return self._image_scores(variables, cells), maps


_coreset = jax.jit(statistics.k_center_greedy, static_argnums=(1, 3))
