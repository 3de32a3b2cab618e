"""A distance between two sets of images that needs no download: the sliced Wasserstein distance
(SWD) over Laplacian-pyramid patches (Karras et al., ICLR 2018, 'Progressive growing of GANs').

Why this one: the study selected its GAN by the Inception FID, whose weights cannot be downloaded
here. A Fréchet distance in a random (untrained) feature space would need a matrix square root
and depends on an arbitrary network; the SWD compares the distributions of local image patches at
several scales directly (fine texture at the pyramid's first level, anatomy at its coarsest), is
exactly zero for identical sets, and is a few sorts: cheap enough to run on the device at every
selection, inside the compiled training call.

  sliced_wasserstein(a, b, key) -> float32 scalar

Each level of both sets is cut into `patch` x `patch` descriptors at the same random positions;
the descriptors are normalised with the mean and std of the first set (so a shift of the second
set shows, which a per-set normalisation would hide), projected on `directions` random unit
vectors, sorted, and compared: the mean absolute difference of the sorted projections is the 1-D
Wasserstein-1 distance per direction. The result is the mean over directions and levels, x 1e3
(Karras' scale) so the figures read easily.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _down(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _up(x):
  n, h, w, c = x.shape
  return jax.image.resize(x, (n, 2 * h, 2 * w, c), 'bilinear')


def laplacian_pyramid(images, levels: int) -> list:
  """[band-pass levels finest first ..., the coarsest low-pass image], float32 NHWC."""
  x = images.astype(jnp.float32)
  out = []
  for _ in range(levels - 1):
    small = _down(x)
    out.append(x - _up(small))
    x = small
  out.append(x)
  return out


def _patches(x, positions, patch: int):
  """Descriptors (n * len(positions), patch * patch * c) at the given top-left corners."""

  def one(image):
    take = lambda p: jax.lax.dynamic_slice(image, (p[0], p[1], 0), (patch, patch, x.shape[-1]))
    return jax.vmap(take)(positions).reshape(positions.shape[0], -1)

  return jax.vmap(one)(x).reshape(-1, patch * patch * x.shape[-1])


def sliced_wasserstein(
  a,
  b,
  key,
  levels: int = 3,
  patch: int = 7,
  patches_per_image: int = 32,
  directions: int = 128,
):
  """SWD x 1e3 between image sets `a` and `b` (same shape (n, h, w, c)), float32 scalar.

  The smallest level must be at least `patch` pixels wide.
  """
  if a.shape != b.shape:
    raise ValueError(f'sliced_wasserstein: sets of shapes {a.shape} and {b.shape}.')
  total = 0.0
  for level, (xa, xb) in enumerate(
    zip(laplacian_pyramid(a, levels), laplacian_pyramid(b, levels), strict=True)
  ):
    size = xa.shape[1]
    if size < patch:
      raise ValueError(f'sliced_wasserstein: level {level} is {size} px, under patch={patch}.')
    pos_key, dir_key = jax.random.split(jax.random.fold_in(key, level))
    # The same positions in both sets: identical sets give identical descriptors.
    positions = jax.random.randint(pos_key, (patches_per_image, 2), 0, size - patch + 1)
    da, db = _patches(xa, positions, patch), _patches(xb, positions, patch)
    mean, std = jnp.mean(da, axis=0), jnp.std(da, axis=0) + 1e-6
    da, db = (da - mean) / std, (db - mean) / std
    d = jax.random.normal(dir_key, (da.shape[1], directions))
    d = d / jnp.linalg.norm(d, axis=0, keepdims=True)
    pa, pb = jnp.sort(da @ d, axis=0), jnp.sort(db @ d, axis=0)
    total = total + jnp.mean(jnp.abs(pa - pb))
  return (total / levels * 1e3).astype(jnp.float32)
