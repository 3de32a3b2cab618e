"""The intensity baseline's task: no gradient, a band of intensities chosen without test data.

Score: the fraction of an image's brain pixels whose intensity lies in [lo, 1] (for head CT,
the hyperdense band of fresh blood, brighter than normal brain tissue); map: those pixels.

A `FitTask`: fitting sums the histograms of the training normals' brain pixels (normal images
only, as every model here) and gives one candidate band per entry of `percentiles` (lo = that
percentile of the training normals' brain pixels); the protocol keeps the candidate with the best
validation AUC and applies it once to the test set.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax

from uadjax.train.state import TrainState, create_train_state
from uadjax.train.task import FitTask

# Percentiles of the normal brain pixels tried as the band's lower edge. Chosen on validation
# AUC alone (mean over the 10 head-CT iterations, `--config.task.percentiles`): of 50, 70, 80,
# 90, 95, 97.5, 99, 99.5 and 99.9 the 90th was best (0.738; 80th 0.714, 95th 0.559); this grid
# brackets it.
PERCENTILES = (80.0, 85.0, 90.0, 92.5, 95.0)


@dataclasses.dataclass(frozen=True)
class IntensityTask(FitTask):
  """Fitting (histogram, candidate bands) and scoring of
  `uadjax.families.intensity.IntensityHistogram`.

  Attributes:
    model: the IntensityHistogram module.
    tx: unused (`optax.identity()`): nothing is optimised.
    percentiles: the candidate lower edges, chosen on validation AUC.
  """

  model: nn.Module
  tx: optax.GradientTransformation = dataclasses.field(default_factory=optax.identity)
  percentiles: tuple = PERCENTILES

  def init(self, key, image_shape) -> TrainState:
    """lo = 1 (nothing in the band)."""
    del key, image_shape
    return create_train_state({'params': {'lo': jnp.ones((), jnp.float32)}}, self.tx)

  def embed(self, variables, images):
    """{'histogram': (n, bins)}: each image's histogram of brain-pixel intensities."""
    del variables
    return {'histogram': self.model.apply({}, images)['histogram']}

  def fit(self, key, features) -> list:
    """One band per percentile of the training normals' brain pixels: lo = the upper edge of
    the bin where their cumulative share reaches the percentile."""
    del key
    hist = np.sum(np.asarray(features['histogram'], np.float64), axis=0)
    if not hist.sum():
      raise ValueError(
        'The training images have no brain pixels (the head mask found nothing above '
        f'model.mask_threshold={self.model.mask_threshold}): no intensity band to fit.'
      )
    cdf = np.cumsum(hist) / max(hist.sum(), 1.0)
    candidates = []
    for q in self.percentiles:
      lo = (np.searchsorted(cdf, q / 100.0) + 1) / self.model.bins
      candidates.append((f'percentile {q:g}', {'params': {'lo': np.asarray(lo, np.float32)}}))
    return candidates

  def score(self, variables, images):
    """Fraction of brain pixels at or above lo (n,), and those pixels (n, h, w), float32."""
    out = self.model.apply({}, images)
    band = (out['intensity'] >= variables['params']['lo']) & out['brain']
    count = jnp.maximum(jnp.sum(out['brain'], axis=(1, 2)), 1)
    return jnp.sum(band, axis=(1, 2)) / count, band.astype(jnp.float32)
