"""feature_gaussian: one Gaussian (Ledoit-Wolf shrunk covariance) of the image's pooled
features of a frozen pretrained backbone; score: the Mahalanobis distance. Map: each patch's share
of it. The shared feature pass, grid and masks: `uadjax.train.features.FeatureTask`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from uadjax.nn import statistics
from uadjax.train.features import FeatureTask, region_mean
from uadjax.train.state import TrainState


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
    pooled = jnp.concatenate([region_mean(taps[name], inside[name]) for name in taps], -1)
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
    """Scores (n,) from `embed`'s features (the same as `score`'s)."""
    p = variables['params']
    return statistics.mahalanobis(features['pooled'], p['mean'], p['precision'])

  def score(self, variables, images):
    """Scores (n,) and anomaly maps (n, h, w) of images."""
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
