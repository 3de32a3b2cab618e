"""The pretrained-feature families: statistics fitted to a frozen ImageNet backbone's features.

Each is a `FitTask` (no epochs, no optimiser): the protocol computes every image's features once
(`embed`, one compiled program), fits the statistics to each iteration's training normals
(`fit`) and scores the validation and test sets from the same features (`score_embedded`);
reports and predict score images (`score`), which gives the same scores and an anomaly map.

  feature_gaussian  one Gaussian (Ledoit-Wolf shrunk covariance) of the image's pooled
                    features; score: the Mahalanobis distance. Map: each patch's share of it.
  padim             a Gaussian per patch position over a seeded subset of channels (PaDiM,
                    Defard et al. 2021); score: the largest patch distance.
  patchcore         a memory bank of training patches, subsampled by a greedy coreset
                    (PatchCore, Roth et al. 2022); patch score: the distance to the nearest
                    bank patch; image score: the mean of the `top` largest, `top` chosen on
                    validation.

Features: the backbone's taps (`model.layers`), each resized to a common grid (`grid` cells a
side; 0: the shallowest tap's) and concatenated. `mask` ('head' | 'brain', the head CT's masks
of `uadjax.evaluation.masks`) keeps the cells inside the region: the pooling, the bank and the
image score see only those.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from uadjax.evaluation import scores as scores_lib
from uadjax.evaluation import statistics
from uadjax.models.features import PretrainedFeatures
from uadjax.train.state import TrainState, create_train_state
from uadjax.train.task import FitTask

MASKS = scores_lib.MASKS


@functools.cache
def _device_pretrained(backbone: str, layers: tuple) -> dict:
  """The backbone's ImageNet weights on the default device, once per process and taps."""
  return jax.device_put(PretrainedFeatures(backbone, layers).pretrained())


@dataclasses.dataclass(frozen=True)
class FeatureTask(FitTask):
  """What the feature families share: the frozen backbone, the feature grid and the region.

  Attributes:
    model: a `uadjax.models.PretrainedFeatures`.
    tx: unused (`optax.identity()`): nothing is optimised.
    mask: 'none' | 'head' | 'brain': the cells the statistics and the scores see.
    mask_threshold, brain_margin: the masks' settings (`uadjax.evaluation.masks`).
    grid: cells a side of the common feature grid (0: the shallowest tap's resolution).
    sigma: the maps' Gaussian blur in pixels at 256x256 (scaled to the image size).
  """

  model: nn.Module
  tx: optax.GradientTransformation = dataclasses.field(default_factory=optax.identity)
  mask: str = 'none'
  mask_threshold: float = 0.1
  brain_margin: int = 3
  grid: int = 0
  sigma: float = 4.0

  embeds_scores = True

  def __post_init__(self):
    if self.mask not in MASKS:
      raise ValueError(f'task.mask={self.mask!r}; expected one of {MASKS}.')

  def frozen_variables(self) -> dict:
    """{'backbone': the pretrained weights}: the same for every iteration, never saved."""
    return {'backbone': _device_pretrained(self.model.backbone, tuple(self.model.layers))}

  def note(self) -> str:
    m = self.model
    return f'{m.backbone} ImageNet features {"+".join(m.layers)}, fitted (no training)'

  def tap_features(self, variables, images):
    """The backbone's taps at their own resolutions {tap: (n, h, w, c)}, and each tap's
    float32 cell weights {tap: (n, h, w)}: 1 for the cells inside the region (over half their
    pixels), else 0."""
    taps = self.model.apply({'params': variables['backbone']}, images)
    region = scores_lib.region_mask(images, self.mask, self.mask_threshold, self.brain_margin)
    return taps, {name: _inside(region, t.shape[:3]) for name, t in taps.items()}

  def grid_features(self, variables, images):
    """(n, g, g, D) features of every tap on the common grid, and (n, g, g) float32 weights:
    1 for the cells inside the region (over half their pixels), else 0."""
    taps = self.model.apply({'params': variables['backbone']}, images)
    side = self.grid or max(t.shape[1] for t in taps.values())
    n = images.shape[0]
    grid = jnp.concatenate(
      [jax.image.resize(t, (n, side, side, t.shape[-1]), 'linear') for t in taps.values()], -1
    )
    region = scores_lib.region_mask(images, self.mask, self.mask_threshold, self.brain_margin)
    return grid, _inside(region, (n, side, side))

  def to_map(self, cells, images):
    """(n, g, g) cell scores -> (n, h, w) maps of the images' size, blurred."""
    size = images.shape[1]
    return statistics.patch_map(cells, size, self.sigma * size / 256.0)

  def _shapes(self, image_shape):
    """The shapes of `embed`'s output for one image (nothing computed)."""
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    backbone = jax.eval_shape(lambda x: self.model.init(jax.random.PRNGKey(0), x)['params'], images)
    return jax.eval_shape(lambda v, x: self.embed({'backbone': v}, x), backbone, images)

  def _state(self, params) -> TrainState:
    return create_train_state({'params': params}, self.tx)


def _inside(region, shape):
  """(n, h, w) float32 weights of a feature grid of `shape` (n, h, w): 1 where over half of a
  cell's pixels are inside `region` (n, H, W) (None: every cell), else 0."""
  if region is None:
    return jnp.ones(shape, jnp.float32)
  share = jax.image.resize(region.astype(jnp.float32), shape, 'linear')
  return (share >= 0.5).astype(jnp.float32)


def _pooled(grid, inside):
  """(n, D) mean feature of each image's cells inside the region (weights `inside`)."""
  total = jnp.maximum(jnp.sum(inside, axis=(1, 2)), 1.0)
  return jnp.einsum('nhwd,nhw->nd', grid, inside) / total[:, None]


@dataclasses.dataclass(frozen=True)
class FeatureGaussianTask(FeatureTask):
  """One Gaussian of the pooled features; the score is the Mahalanobis distance.

  Each tap is pooled at its own resolution (the mean of its cells inside the region; `grid` is
  not used), and the taps' means are concatenated: f = [mean_p f_tp]_t. The squared distance
  d^2 = (f - mu)' u, u = P (f - mu), splits exactly into the taps' cells' shares,
  d^2 = sum_t mean_p (f_tp - mu_t)' u_t: the map is the sum of the taps' share maps, each
  upsampled to the image, divided by d (its mean is then the score d, on the score's scale as
  an autoencoder's residual map is; negative values clipped to 0).
  """

  def _pooled_taps(self, variables, images):
    """The taps, their cell weights and the (n, D) pooled feature."""
    taps, inside = self.tap_features(variables, images)
    pooled = jnp.concatenate([_pooled(taps[name], inside[name]) for name in taps], -1)
    return taps, inside, pooled

  def embed(self, variables, images):
    """{'pooled': (n, D)}: each tap's mean over the region's cells, concatenated."""
    return {'pooled': self._pooled_taps(variables, images)[2]}

  def init(self, key, image_shape) -> TrainState:
    """A zero mean (D,) and precision (D, D)."""
    del key
    d = self._shapes(image_shape)['pooled'].shape[-1]
    zeros = {'mean': jnp.zeros(d, jnp.float32), 'precision': jnp.zeros((d, d), jnp.float32)}
    return self._state(zeros)

  def fit(self, key, features) -> list:
    """The Ledoit-Wolf Gaussian of the training normals' pooled features (one candidate)."""
    del key
    mean, precision, shrinkage = statistics.ledoit_wolf(features['pooled'])
    logging.info('Ledoit-Wolf shrinkage %.3f (%d dimensions).', float(shrinkage), len(mean))
    params = {'mean': mean.astype(np.float32), 'precision': precision.astype(np.float32)}
    return [('Ledoit-Wolf Gaussian', {'params': params})]

  def score_embedded(self, variables, features):
    p = variables['params']
    return statistics.mahalanobis(features['pooled'], p['mean'], p['precision'])

  def score(self, variables, images):
    p = variables['params']
    taps, inside, pooled = self._pooled_taps(variables, images)
    diff = pooled - p['mean']
    u = diff @ p['precision']
    scores = jnp.sqrt(jnp.maximum(jnp.sum(u * diff, -1), 0.0))
    n, size = images.shape[0], images.shape[1]
    total, start = jnp.zeros((n, size, size), jnp.float32), 0
    for name, tap in taps.items():
      channels = slice(start, start + tap.shape[-1])
      start += tap.shape[-1]
      # A cell's share of its tap's term: its weight makes the cells' mean the term itself.
      cells = tap.shape[1] * tap.shape[2]
      weight = inside[name] * cells / jnp.maximum(inside[name].sum((1, 2)), 1.0)[:, None, None]
      shares = jnp.einsum('nhwd,nd->nhw', tap - p['mean'][channels], u[:, channels]) * weight
      total += jax.image.resize(shares, (n, size, size), 'bilinear')
    shares = jnp.maximum(total / jnp.maximum(scores, 1e-6)[:, None, None], 0.0)
    return scores, self.to_map(shares, images)


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
    return jnp.max(self._cells(variables, features) * features['inside'], axis=1)

  def score(self, variables, images):
    features = self.embed(variables, images)
    cells = self._cells(variables, features) * features['inside']
    side = int(round(cells.shape[1] ** 0.5))
    return jnp.max(cells, axis=1), self.to_map(cells.reshape(-1, side, side), images)


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
    patches = np.asarray(features['patches'])
    points = patches[np.asarray(features['inside']) > 0]
    if not len(points):
      raise ValueError(
        f'task.mask={self.mask!r} leaves no patch of the training images inside the region: '
        "nothing for the memory bank (try task.mask='none')."
      )
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
    return self._image_scores(variables, self._cells(variables, features))

  def score(self, variables, images):
    cells = self._cells(variables, self.embed(variables, images))
    side = int(round(cells.shape[1] ** 0.5))
    maps = self.to_map(cells.reshape(-1, side, side), images)
    return self._image_scores(variables, cells), maps


_coreset = jax.jit(statistics.k_center_greedy, static_argnums=(1, 3))
