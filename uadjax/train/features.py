"""What the pretrained-feature families share: a `FitTask` over a frozen backbone's features.

Each family (`uadjax.families.feature_gaussian`, `padim`, `patchcore`, `patch_knn`) is a
`FeatureTask` (no epochs, no optimiser): the protocol computes every image's features once
(`embed`, one compiled program), fits the statistics to each iteration's training normals
(`fit`) and scores the validation and test sets from the same features (`score_embedded`);
reports and predict score images (`score`), which gives the same scores and an anomaly map.

Features: the backbone's taps (`model.layers`), each resized to a common grid (`grid` cells a
side; 0: the shallowest tap's) and concatenated. `mask` ('head' | 'brain', the head CT's masks
of `uadjax.nn.masks`) keeps the cells inside the region: the pooling, the bank and the
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

from uadjax.nn import masks, statistics
from uadjax.nn.features import PretrainedFeatures
from uadjax.train.state import TrainState, create_train_state
from uadjax.train.task import FitTask


@functools.cache
def _device_pretrained(backbone: str, layers: tuple, weights: str) -> dict:
  """The backbone's pretrained weights on the default device, once per process and taps."""
  return jax.device_put(PretrainedFeatures(backbone, layers, weights).pretrained())


@dataclasses.dataclass(frozen=True)
class FeatureTask(FitTask):
  """What the feature families share: the frozen backbone, the feature grid and the region.

  Attributes:
    model: a `uadjax.nn.features.PretrainedFeatures`.
    tx: unused (`optax.identity()`): nothing is optimised.
    mask: 'none' | 'head' | 'brain': the cells the statistics and the scores see.
    mask_threshold, brain_margin: the masks' settings (`uadjax.nn.masks`).
    grid: cells a side of the common feature grid (0: the shallowest tap's resolution).
    sigma: the maps' Gaussian blur in pixels at 256x256 (scaled to the image size).
  """

  model: nn.Module
  tx: optax.GradientTransformation = dataclasses.field(default_factory=optax.identity)
  mask: str = 'none'
  mask_threshold: float = masks.HEAD_THRESHOLD
  brain_margin: int = masks.BRAIN_MARGIN
  grid: int = 0
  sigma: float = 4.0

  embeds_scores = True

  def __post_init__(self):
    if self.mask not in masks.MASKS:
      raise ValueError(f'task.mask={self.mask!r}; expected one of {masks.MASKS}.')

  def frozen_variables(self) -> dict:
    """{'backbone': the pretrained weights}: the same for every iteration, never saved."""
    m = self.model
    return {'backbone': _device_pretrained(m.backbone, tuple(m.layers), m.weights)}

  def note(self) -> str:
    """One line for the log: the backbone, its taps, what is fitted."""
    m = self.model
    return f'{m.backbone} features {"+".join(m.layers)}, fitted (no training)'

  def tap_features(self, variables, images):
    """The backbone's taps at their own resolutions {tap: (n, h, w, c)}, and each tap's
    float32 cell weights {tap: (n, h, w)}: 1 for the cells inside the region (over half their
    pixels), else 0."""
    taps = self.model.apply({'params': variables['backbone']}, images)
    region = masks.region_mask(images, self.mask, self.mask_threshold, self.brain_margin)
    return taps, {name: inside_cells(region, t.shape[:3]) for name, t in taps.items()}

  def grid_features(self, variables, images):
    """(n, g, g, D) features of every tap on the common grid, and (n, g, g) float32 weights:
    1 for the cells inside the region (over half their pixels), else 0."""
    taps = self.model.apply({'params': variables['backbone']}, images)
    side = self.grid or max(t.shape[1] for t in taps.values())
    n = images.shape[0]
    grid = jnp.concatenate(
      [jax.image.resize(t, (n, side, side, t.shape[-1]), 'linear') for t in taps.values()], -1
    )
    region = masks.region_mask(images, self.mask, self.mask_threshold, self.brain_margin)
    return grid, inside_cells(region, (n, side, side))

  def to_map(self, cells, images):
    """(n, g, g) cell scores -> (n, h, w) maps of the images' size, blurred."""
    size = images.shape[1]
    return statistics.patch_map(cells, size, self.sigma * size / 256.0)

  def bank_points(self, features) -> np.ndarray:
    """(N, D) numpy: the patches of `embed`'s {'patches', 'inside'} inside the region, what a
    memory bank is built from; ValueError naming `task.mask` when it leaves none."""
    patches = np.asarray(features['patches'])
    points = patches[np.asarray(features['inside']) > 0]
    if not len(points):
      raise ValueError(
        f'task.mask={self.mask!r} leaves no patch of the training images inside the region: '
        "nothing for the memory bank (try task.mask='none')."
      )
    return points

  def _shapes(self, image_shape):
    """The shapes of `embed`'s output for one image (nothing computed)."""
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    backbone = jax.eval_shape(lambda x: self.model.init(jax.random.PRNGKey(0), x)['params'], images)
    return jax.eval_shape(lambda v, x: self.embed({'backbone': v}, x), backbone, images)

  def _state(self, params) -> TrainState:
    return create_train_state({'params': params}, self.tx)


def inside_cells(region, shape):
  """(n, h, w) float32 weights of a feature grid of `shape` (n, h, w): 1 where over half of a
  cell's pixels are inside `region` (n, H, W) (None: every cell), else 0."""
  if region is None:
    return jnp.ones(shape, jnp.float32)
  share = jax.image.resize(region.astype(jnp.float32), shape, 'linear')
  return (share >= 0.5).astype(jnp.float32)


def region_mean(grid, inside):
  """(n, D) mean feature of each image's cells inside the region (weights `inside`)."""
  total = jnp.maximum(jnp.sum(inside, axis=(1, 2)), 1.0)
  return jnp.einsum('nhwd,nhw->nd', grid, inside) / total[:, None]
