"""The baseline that needs no training: a statistic of pixel intensities inside the brain.

`IntensityHistogram` has no parameters: it returns, per image, the brain mask (the head mask
eroded by the skull margin, uadjax.nn.masks) and the histogram of the brain's pixel
intensities. uadjax.families.intensity.task turns it into a score (the fraction of brain
pixels in the hyperdense band of fresh blood) and chooses the band on the training normals
and the validation images.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from uadjax.nn import masks


class IntensityHistogram(nn.Module):
  """Brain masks and per-image intensity histograms of (n, h, w, c) images in [0, 1].

  Attributes:
    bins: histogram bins over [0, 1].
    mask_threshold: the head mask's intensity threshold.
    brain_margin: the skull margin in pixels.
    dtype: unused (no computation to cast); kept so every model takes it.
  """

  bins: int = 100
  mask_threshold: float = masks.HEAD_THRESHOLD
  brain_margin: int = masks.BRAIN_MARGIN
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    del train
    x = jnp.mean(images.astype(jnp.float32), axis=-1)
    brain = masks.brain_mask(x, self.mask_threshold, self.brain_margin)
    index = jnp.clip((x * self.bins).astype(jnp.int32), 0, self.bins - 1)
    hist = jax.vmap(
      lambda i, m: jnp.zeros(self.bins, jnp.float32).at[i.reshape(-1)].add(m.reshape(-1))
    )(index, brain.astype(jnp.float32))
    return {'intensity': x, 'brain': brain, 'histogram': hist}
