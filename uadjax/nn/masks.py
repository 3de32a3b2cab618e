"""Head and brain masks from a head CT image itself (no external model), in JAX.

The study's discussion suggests restricting the anomaly score to the head. `head_mask` follows
the usual recipe: threshold, keep the largest connected component, fill its holes; `brain_mask`
erodes the head by a margin, which removes the skull ring (a fixed margin rather than an
intensity threshold: fresh blood can be as bright as bone after per-image min-max scaling).
Everything is pure and batched, so the masks are computed inside the compiled scoring.

Attributes:
  head_mask: (n, h, w) bool masks of the head.
  brain_mask: the head eroded by `margin` pixels.
  MASKS: the regions a score or a feature statistic can be limited to ('none' | 'head' | 'brain').
  HEAD_THRESHOLD, BRAIN_MARGIN: the defaults of the head mask's threshold and the skull margin
    (every family's `mask_threshold` and `brain_margin` default to these).
  region_mask: the mask of a region's name (None for 'none').
  dilate, erode: 3x3 binary morphology, repeated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MASKS = ('none', 'head', 'brain')
HEAD_THRESHOLD = 0.1  # of [0, 1] images: above it is the head (and the table, opened away)
BRAIN_MARGIN = 3  # pixels of the head's rim eroded away: the skull ring


def _max3(x):
  """3x3 maximum filter over the last two axes of an int32 array (edge pixels see only the
  image: the window's start value, also its padding, is the smallest int32)."""
  lowest = jnp.array(jnp.iinfo(jnp.int32).min, jnp.int32)
  return jax.lax.reduce_window(x, lowest, jax.lax.max, (1, 3, 3), (1, 1, 1), 'SAME')


def dilate(mask, steps: int = 1):
  """Binary dilation with a 3x3 square, `steps` times: (n, h, w) bool."""
  x = mask.astype(jnp.int32)
  for _ in range(steps):
    x = _max3(x)
  return x > 0


def erode(mask, steps: int = 1):
  """Binary erosion with a 3x3 square, `steps` times (outside the image counts as background)."""
  x = jnp.pad(mask, ((0, 0), (1, 1), (1, 1))).astype(jnp.int32)
  for _ in range(steps):
    x = -_max3(-x)
  return x[:, 1:-1, 1:-1] > 0


def largest_component(mask):
  """The largest 8-connected component of each mask: labels spread as the maximum pixel index
  over each component (one 3x3 max filter a round, until nothing changes)."""
  n, h, w = mask.shape
  ids = jnp.arange(1, h * w + 1, dtype=jnp.int32).reshape(1, h, w)
  labels = jnp.where(mask, ids, 0)

  def spread(state):
    labels, _ = state
    new = jnp.where(mask, _max3(labels), 0)
    return new, jnp.any(new != labels)

  labels, _ = jax.lax.while_loop(lambda s: s[1], spread, (labels, jnp.array(True)))
  counts = jax.vmap(lambda lab: jnp.bincount(lab.reshape(-1), length=h * w + 1))(labels)
  counts = counts.at[:, 0].set(0)  # the background
  biggest = jnp.argmax(counts, axis=1)
  return (labels == biggest[:, None, None]) & mask


def fill_holes(mask):
  """Each mask with the background regions that do not touch the image border filled."""
  n, h, w = mask.shape
  border = jnp.zeros((h, w), bool).at[0].set(True).at[-1].set(True)
  border = border.at[:, 0].set(True).at[:, -1].set(True)
  outside = border[None] & ~mask

  def grow(state):
    outside, _ = state
    new = dilate(outside) & ~mask
    return new, jnp.any(new != outside)

  outside, _ = jax.lax.while_loop(lambda s: s[1], grow, (outside, jnp.array(True)))
  return ~outside


def head_mask(images, threshold: float = HEAD_THRESHOLD):
  """(n, h, w) bool: the head of each (n, h, w[, c]) image in [0, 1]: pixels above
  `threshold`, opened (thin lines of the table and annotations go), the largest component,
  holes filled."""
  x = images.astype(jnp.float32)
  if x.ndim == 4:
    x = jnp.mean(x, axis=-1)
  foreground = dilate(erode(x > threshold))
  return fill_holes(largest_component(foreground))


def brain_mask(images, threshold: float = HEAD_THRESHOLD, margin: int = BRAIN_MARGIN):
  """The head mask eroded by `margin` pixels: the inside of the skull."""
  return erode(head_mask(images, threshold), margin)


def region_mask(images, region: str, threshold: float = HEAD_THRESHOLD, margin: int = BRAIN_MARGIN):
  """None (every pixel) for 'none', else the head or brain masks of the images."""
  if region == 'none':
    return None
  if region == 'head':
    return head_mask(images, threshold)
  if region == 'brain':
    return brain_mask(images, threshold, margin)
  raise ValueError(f'task.mask={region!r}; expected one of {MASKS}.')
