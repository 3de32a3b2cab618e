"""The patch nearest-neighbour detector (AnomalyDINO, Damm et al. 2025): each test patch's
cosine distance to its nearest patch of the training normals, on a frozen self-supervised ViT's
tokens (DINOv2) or any pretrained backbone's features.

  bank   the training normals' patch features inside the region (`mask`), unit length; at most
         `memory` rows: more are cut to `memory` by a seeded random subset ('random') or
         PatchCore's greedy coreset ('coreset'), fewer are padded with rows that never match
  patch  1 - the largest cosine similarity to a bank row, as chunked matrix products
  image  the mean of the largest fraction `top` of its patch distances inside the region,
         `top` chosen on validation among the candidates
  map    the patch distances, upsampled and blurred

Time and memory: the bank holds at most `memory` rows whatever the data set's size, so scoring
costs (patches of the scored images) x memory x D multiply-adds, linear in the images scored,
and the bank's memory is bounded. The shared feature pass, grid and masks:
`uadjax.train.features.FeatureTask`.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from uadjax.nn import statistics
from uadjax.train.features import FeatureTask
from uadjax.train.state import TrainState

REDUCTIONS = ('random', 'coreset')


@dataclasses.dataclass(frozen=True)
class PatchKNNTask(FeatureTask):
  """A memory bank of the training normals' unit patch features; patch score: the cosine
  distance to the nearest bank row; image score: the mean of the largest `top` fraction.

  Attributes:
    memory: rows of the bank (a fixed shape, which a checkpoint restores into).
    reduce: how a larger set of patches is cut to `memory`: 'random' (seeded) or 'coreset'.
    neighbourhood: each cell's feature is the mean over this square of cells (1: the token).
    top: candidates for the fraction (0, 1] of an image's patch distances averaged (their
      largest), chosen on validation.
    chunk: queries per matrix product (memory chunk x memory floats).
    projection: dimensions of the coreset's random projection.
  """

  memory: int = 32768
  reduce: str = 'random'
  neighbourhood: int = 1
  top: tuple = (0.01,)
  chunk: int = 512
  projection: int = 128

  def __post_init__(self):
    super().__post_init__()
    if self.reduce not in REDUCTIONS:
      raise ValueError(f'task.reduce={self.reduce!r}; expected one of {REDUCTIONS}.')
    bad = [t for t in self.top if not 0.0 < float(t) <= 1.0]
    if bad or not self.top:
      raise ValueError(f'task.top={tuple(self.top)}: fractions in (0, 1] expected.')

  def note(self) -> str:
    """One line for the log: the backbone, its taps, what is fitted."""
    m = self.model
    return f'{m.backbone} features {"+".join(m.layers)}, patch kNN bank (no training)'

  def embed(self, variables, images):
    """{'patches': (n, g*g, D) unit features, 'inside': (n, g*g)}."""
    grid, inside = self.grid_features(variables, images)
    k = self.neighbourhood
    if k > 1:
      grid = nn.avg_pool(grid, (k, k), strides=(1, 1), padding='SAME', count_include_pad=False)
    n, d = grid.shape[0], grid.shape[-1]
    return {
      'patches': statistics.unit_rows(grid.reshape(n, -1, d)),
      'inside': inside.reshape(n, -1),
    }

  def init(self, key, image_shape) -> TrainState:
    """A zero bank (memory, D), its valid rows and top."""
    del key
    d = self._shapes(image_shape)['patches'].shape[-1]
    zeros = {
      'bank': jnp.zeros((self.memory, d), jnp.float32),
      'valid': jnp.zeros((self.memory,), jnp.float32),
      'top': jnp.zeros((), jnp.float32),
    }
    return self._state(zeros)

  def fit(self, key, features) -> list:
    """The bank of the training normals' patches inside the region; one candidate per `top`."""
    points = self.bank_points(features)
    valid = np.ones(self.memory, np.float32)
    logging.info(
      'Patch kNN bank: %d training patches%s.',
      len(points),
      f', cut to {self.memory} ({self.reduce})' if len(points) > self.memory else '',
    )
    if len(points) > self.memory:
      if self.reduce == 'coreset':
        chosen = np.asarray(_coreset(jnp.asarray(points), self.memory, key, self.projection))
      else:
        seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
        chosen = np.sort(np.random.default_rng(seed).choice(len(points), self.memory, False))
      bank = points[chosen]
    else:
      bank = np.zeros((self.memory, points.shape[1]), np.float32)
      bank[: len(points)] = points
      valid[len(points) :] = 0.0
    bank = bank.astype(np.float32)
    return [
      (f'top {t:g}', {'params': {'bank': bank, 'valid': valid, 'top': np.float32(t)}})
      for t in self.top
    ]

  def patch_distances(self, variables, features):
    """(n, cells) each cell's cosine distance to the bank (0 outside the region)."""
    patches = features['patches']
    n, cells, d = patches.shape
    p = variables['params']
    nearest = statistics.nearest_cosine_distances(
      patches.reshape(-1, d), p['bank'], p['valid'], self.chunk
    )
    return nearest.reshape(n, cells) * features['inside']

  def score_embedded(self, variables, features):
    """Scores (n,) from `embed`'s features (the same as `score`'s)."""
    cells = self.patch_distances(variables, features)
    return statistics.top_fraction_mean(cells, features['inside'], variables['params']['top'])

  def score(self, variables, images):
    """Scores (n,) and anomaly maps (n, h, w) of images."""
    features = self.embed(variables, images)
    cells = self.patch_distances(variables, features)
    scores = statistics.top_fraction_mean(cells, features['inside'], variables['params']['top'])
    side = int(round(cells.shape[1] ** 0.5))
    return scores, self.to_map(cells.reshape(-1, side, side), images)


_coreset = jax.jit(statistics.k_center_greedy, static_argnums=(1, 3))
