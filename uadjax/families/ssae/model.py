"""Scale-space autoencoder (SSAE; Baur et al., MICCAI 2020): one autoencoder per Laplacian band.

The pyramid (study): d0 = x, d_{k+1} = down(blur(d_k)) with a 5x5 Gaussian blur and bilinear x0.5
resizing; band_k = d_k - up(d_{k+1}) for k = 0, 1, 2. Autoencoder k reconstructs band k, and the
image is rebuilt coarse to fine: r2 = AE2(band2) + up(d3), r1 = AE1(band1) + up(r2),
r0 = AE0(band0) + up(r1). With identity autoencoders the rebuild is exact (r_k = d_k).

Attributes:
  gaussian_kernel: the 5x5 blur kernel (binomial, the classic Burt-Adelson pyramid kernel).
  blur, down, up: the pyramid's operators on NHWC float arrays.
  laplacian_pyramid: x -> (targets (d0, d1, d2), bands (band0, band1, band2), top d3).
  rebuild: coarse-to-fine reconstruction from band reconstructions and the top level.
  SSAE: the Flax module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from uadjax.families.cae.model import CAE

N_BANDS = 3


def gaussian_kernel() -> np.ndarray:
  """The 5x5 binomial kernel (1, 4, 6, 4, 1)^T (1, 4, 6, 4, 1) / 256: a Gaussian of sigma ~1."""
  g = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
  return np.outer(g, g).astype(np.float32)


def blur(x):
  """5x5 Gaussian blur of an NHWC array, each channel on its own.

  Edges are padded by reflection, not zeros: zero padding would darken the border, so a constant
  image would get non-zero bands.
  """
  c = x.shape[-1]
  xp = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='reflect')
  kernel = jnp.tile(jnp.asarray(gaussian_kernel(), x.dtype)[:, :, None, None], (1, 1, 1, c))
  return jax.lax.conv_general_dilated(
    xp, kernel, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=c
  )


def _resize(x, h, w):
  # antialias=False: plain bilinear interpolation, as PyTorch's F.interpolate(mode='bilinear');
  # the blur before each down-sampling is the anti-aliasing.
  return jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), 'bilinear', antialias=False)


def down(x):
  """Bilinear x0.5 (height and width halved, rounded up)."""
  return _resize(x, (x.shape[1] + 1) // 2, (x.shape[2] + 1) // 2)


def up(x, like=None):
  """Bilinear x2, or to the height and width of `like`."""
  h, w = (like.shape[1], like.shape[2]) if like is not None else (2 * x.shape[1], 2 * x.shape[2])
  return _resize(x, h, w)


def laplacian_pyramid(x, n_bands: int = N_BANDS):
  """The study's pyramid of `x` (NHWC, float32).

  Returns:
    (targets, bands, top): targets = (d0, ..., d_{n-1}) with d0 = x, the images each scale's
    reconstruction is compared with; bands = (band0, ..., band_{n-1}); top = d_n.
  """
  levels = [x]
  for _ in range(n_bands):
    levels.append(down(blur(levels[-1])))
  bands = tuple(levels[k] - up(levels[k + 1], like=levels[k]) for k in range(n_bands))
  return tuple(levels[:n_bands]), bands, levels[n_bands]


def rebuild(bands, top, autoencoders: Sequence[Callable]):
  """Coarse-to-fine rebuild: r_k = AE_k(band_k) + up(r_{k+1}), with r_n = top.

  Returns (r0, ..., r_{n-1}), finest first.
  """
  r = top
  out = []
  for k in reversed(range(len(bands))):
    r = autoencoders[k](bands[k]) + up(r, like=bands[k])
    out.append(r)
  return tuple(reversed(out))


class SSAE(nn.Module):
  """Three CAE-style autoencoders on the bands of a Laplacian pyramid, rebuilt coarse to fine.

  Attributes:
    features: encoder channels of each band's autoencoder, finest band first (study:
      (32..512), (32..256), (32..128): every band is encoded to 2x2 at 64x64 input).
    dropout: dropout rate of every block.
    out_channels: channels of the image.
    dtype: compute dtype of the autoencoders; the pyramid, the rebuild and the outputs are
      float32 (the bands are small differences, which bfloat16 would round away).
  """

  features: Sequence[Sequence[int]] = ((32, 64, 128, 256, 512), (32, 64, 128, 256), (32, 64, 128))
  dropout: float = 0.25
  out_channels: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    """Returns float32 {'reconstruction': r0, 'reconstructions': (r0, r1, r2),
    'targets': (x, d1, d2), 'bands': (band0, band1, band2)}."""
    x = jnp.asarray(x, jnp.float32)
    targets, bands, top = laplacian_pyramid(x, len(self.features))
    autoencoders = [
      CAE(
        tuple(f),
        dropout=self.dropout,
        out_channels=self.out_channels,
        dtype=self.dtype,
        name=f'band_{k}',
      )
      for k, f in enumerate(self.features)
    ]
    fns = [lambda b, ae=ae: ae(b, train=train)['reconstruction'] for ae in autoencoders]
    recons = rebuild(bands, top, fns)
    return {
      'reconstruction': recons[0],
      'reconstructions': recons,
      'targets': targets,
      'bands': bands,
    }
