"""Image preprocessing: what every reader applies before an image enters a dataset.

Modes (`data.preprocess`; every result is float32 (size, size, channels) in [0, 1]):
  'gray'        the head-CT study: one gray channel, resize, per-image min-max to [0, 1].
  'rgb'         the fundus classifier: RGB, resize, /255 (ImageNet normalisation is the model
                input's business, after augmentation: `uadjax.families.densenet.task`).
  'rg_percentile'  the fundus f-AnoGAN: red and green only (the UWF blue channel is empty),
                resize, each image rescaled from its 0-99.99 percentile range to [0, 1] and
                clipped (the networks then see [-1, 1]).

Large JPEGs (UWF originals are up to 3072x3900) are decoded at a reduced scale (`Image.draft`:
the JPEG decoder's DCT scaling, 1/2 to 1/8) no smaller than twice the target size, then
resized: a fraction of the time and memory of a full decode.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from PIL import Image

# Below this range an image is treated as constant: min-max would divide by ~0.
_EPS = 1e-8
MODES = ('gray', 'rgb', 'rg_percentile')
# Channels of each mode's output.
CHANNELS = {'gray': 1, 'rgb': 3, 'rg_percentile': 2}
# The upper percentile of 'rg_percentile' (the study's 99.99).
PERCENTILE_HIGH = 99.99


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


def percentile_rescale(x: np.ndarray, high: float = PERCENTILE_HIGH) -> np.ndarray:
  """Rescales an image (h, w, c) from its [0, `high`] percentile range to [0, 1], clipped.

  The range is taken over all channels together, so their ratio is kept. A constant image
  becomes zeros.
  """
  lo, hi = np.percentile(x, [0.0, high])
  if hi - lo <= _EPS:
    return np.zeros_like(x, np.float32)
  return np.clip((x - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def draft(image: Image.Image, size: int) -> None:
  """Lets a JPEG decode at the smallest DCT scale that keeps both sides >= 2 x `size`."""
  if image.format == 'JPEG':
    image.draft('RGB' if image.mode != 'L' else 'L', (2 * size, 2 * size))


def check_mode(mode: str) -> str:
  """Returns `mode`, or raises a ValueError naming `data.preprocess` and the known modes."""
  if mode not in MODES:
    raise ValueError(f'data.preprocess={mode!r}; expected one of {MODES}.')
  return mode


def preprocess(image: Image.Image, size: int, mode: str = 'gray') -> np.ndarray:
  """One decoded image -> float32 (size, size, CHANNELS[mode]) in [0, 1] (see the module doc)."""
  check_mode(mode)
  if mode == 'gray':
    gray = resize(to_gray(image), size)
    array = np.asarray(gray, dtype=np.float32)[..., None]
    return minmax(array).astype(np.float32)
  if image.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'F'):
    # A one-channel high-depth image (DICOM frames): replicate it into each colour channel.
    image = Image.merge('RGB', [minmax_image(image)] * 3)
  rgb = np.asarray(resize(image.convert('RGB'), size), dtype=np.float32)
  if mode == 'rgb':
    return rgb / 255.0
  return percentile_rescale(rgb[..., :2])


def minmax_image(image: Image.Image) -> Image.Image:
  """A high-depth one-channel image min-max scaled to an 8-bit 'L' image."""
  x = np.asarray(image.convert('F'), np.float32)[..., None]
  return Image.fromarray(np.round(minmax(x)[..., 0] * 255).astype(np.uint8), 'L')
