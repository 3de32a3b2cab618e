"""Image preprocessing as in the study: one gray channel, resize, per-image min-max to [0, 1]."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from PIL import Image

# Below this range an image is treated as constant: min-max would divide by ~0.
_EPS = 1e-8


def to_gray(image: Image.Image) -> Image.Image:
  """Converts any PIL mode (RGB, RGBA, P, I;16, F, L) to one 8-bit-free gray channel ('F')."""
  if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
    return image.convert('F')
  if image.mode in ('RGBA', 'LA', 'P', 'PA'):
    # Alpha is ignored: composite nothing, just drop it, as torchvision's Grayscale does.
    image = image.convert('RGB')
  return image.convert('L').convert('F')


def resize(image: Image.Image, size: int) -> Image.Image:
  """Bilinear resize to `size` x `size` (the study's torchvision Resize, square)."""
  return image.resize((size, size), Image.BILINEAR)


def minmax(x, axis=(-3, -2, -1)):
  """Per-image min-max rescale to [0, 1]; a constant image becomes zeros, never NaN.

  Works on numpy and JAX arrays alike (the augmentation reapplies it on the device).
  Images are NHWC or HWC: the last three axes are reduced.
  """
  xp = jnp if not isinstance(x, np.ndarray) else np
  lo = xp.min(x, axis=axis, keepdims=True)
  hi = xp.max(x, axis=axis, keepdims=True)
  span = hi - lo
  return xp.where(span > _EPS, (x - lo) / xp.maximum(span, _EPS), xp.zeros_like(x))


def preprocess(image: Image.Image, size: int) -> np.ndarray:
  """Gray, resize to `size`, min-max to [0, 1]: a float32 array of shape (size, size, 1)."""
  gray = resize(to_gray(image), size)
  array = np.asarray(gray, dtype=np.float32)[..., None]
  return minmax(array).astype(np.float32)
