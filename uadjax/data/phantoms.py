"""Synthetic head-CT phantoms: the built-in data of the demo and of the tests.

Each phantom is an axial slice: a bright elliptical skull ring, brain parenchyma with a faint
low-frequency texture, two dark lateral ventricles, CT-like Gaussian noise, and a random pose
(rotation, shift, scale, head shape). Abnormal phantoms carry one to three hyperdense blobs
(acute haemorrhage is brighter than parenchyma on CT) inside the brain; their pixel masks are
returned, so that anomaly maps can be scored against a known truth.
"""

from __future__ import annotations

import numpy as np

from uadjax.data.preprocess import minmax

_SKULL, _BRAIN, _VENTRICLE, _BLOOD = 1.0, 0.45, 0.22, 0.4


def _ellipse(u, v, a, b):
  return (u / a) ** 2 + (v / b) ** 2


def _smooth_noise(rng, size, cells=6):
  """Low-frequency texture: a coarse random grid, bilinearly upsampled."""
  coarse = rng.normal(size=(cells + 1, cells + 1))
  t = np.linspace(0, cells, size)
  i0 = np.minimum(t.astype(int), cells - 1)
  f = t - i0
  rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
  return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def phantom(rng: np.random.Generator, size: int = 64, abnormal: bool = False):
  """One phantom.

  Returns:
    (image (size, size, 1) float32 in [0, 1], mask (size, size) bool: the lesion pixels).
  """
  y, x = (np.mgrid[0:size, 0:size] + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
  angle = np.deg2rad(rng.uniform(-15, 15))
  cx, cy = rng.uniform(-0.06, 0.06, size=2)
  scale = rng.uniform(0.88, 1.0)
  u = np.cos(angle) * (x - cx) + np.sin(angle) * (y - cy)
  v = -np.sin(angle) * (x - cx) + np.cos(angle) * (y - cy)
  a, b = 0.72 * scale * rng.uniform(0.95, 1.05), 0.88 * scale  # half-axes: head is taller
  thickness = rng.uniform(0.07, 0.1)

  head = _ellipse(u, v, a, b) <= 1
  brain = _ellipse(u, v, a - thickness, b - thickness) <= 1
  image = np.where(head, _SKULL, 0.0)
  image = np.where(brain, _BRAIN + 0.03 * _smooth_noise(rng, size), image)

  # Two lateral ventricles, mirror images about the midline, slightly asymmetric.
  vy = rng.uniform(-0.15, 0.05)
  va, vb = rng.uniform(0.06, 0.1), rng.uniform(0.16, 0.24)
  for side in (-1, 1):
    vx = side * rng.uniform(0.1, 0.16)
    image = np.where(_ellipse(u - vx, v - vy, va, vb) <= 1, _VENTRICLE, image)

  mask = np.zeros((size, size), bool)
  if abnormal:
    inner = _ellipse(u, v, a - thickness, b - thickness)
    for _ in range(rng.integers(1, 4)):
      # Rejection-sample a centre well inside the brain.
      while True:
        bu, bv = rng.uniform(-a, a), rng.uniform(-b, b)
        if _ellipse(bu, bv, a - thickness, b - thickness) <= 0.6:
          break
      radius = rng.uniform(0.2, 0.4)  # 3-6 pixels of Gaussian sigma at 64x64
      profile = np.exp(-((u - bu) ** 2 + (v - bv) ** 2) / (2 * (radius / 2) ** 2))
      profile = np.where(inner <= 1, profile, 0.0)
      image = image + _BLOOD * profile
      mask |= profile > 0.5

  image = image + rng.normal(0, 0.02, size=image.shape)  # quantum noise
  image = minmax(image[..., None].astype(np.float32))
  return image.astype(np.float32), mask


def make_phantoms(n_normal: int, n_abnormal: int, size: int = 64, seed: int = 0):
  """A deterministic set: the first `n_abnormal` are abnormal (label 1), then the normals.

  Returns:
    (images (n, size, size, 1) float32, labels (n,) int32, masks (n, size, size) bool,
    names list[str]).
  """
  images, masks, labels = [], [], []
  for i in range(n_abnormal + n_normal):
    # One generator per phantom, so phantom i is the same whatever the set's size.
    rng = np.random.default_rng([seed, i])
    abnormal = i < n_abnormal
    img, m = phantom(rng, size, abnormal)
    images.append(img)
    masks.append(m)
    labels.append(int(abnormal))
  names = [f'phantom_{i:03d}' for i in range(len(labels))]
  return np.stack(images), np.array(labels, np.int32), np.stack(masks), names
