"""Training-time augmentation: flip, affine, brightness/contrast jitter, then min-max again.

The study (PyTorch) used torchvision's RandomHorizontalFlip, RandomAffine and ColorJitter, and
min-max rescaled each image after augmenting it. Two backends do the same thing:

- `augment` (backend 'jax'): pure, keyed, batched and jit/vmap-compatible, so it runs inside the
  train step on the device, also under `jax.vmap` over cross-validation folds.
- `host_augmenter` (backend 'albumentations'): numpy on the host, built on albumentations, for
  input pipelines that run outside jit and as a reference for the JAX backend.

Geometry (both backends): albumentations' `A.Affine`, which applies, about the image centre
c = (w/2 - 0.5, h/2 - 0.5) in pixel-centre coordinates, first the scale, then the rotation, then
the shear, then the translation: x' = Sh @ R @ S @ (x - c) + c + t. torchvision shears before it
rotates and rounds its translation to whole pixels; with the study's small angles the difference
is a fraction of a pixel.

Attributes:
  PARAM_NAMES: the keys of the dict `sample_params` returns.
  default_config: the study's head-CT augmentation values.
  sample_params: per-image random parameters, uniform in the configured ranges.
  affine_matrices: (n, 2, 3) forward matrices in OpenCV's `warpAffine` convention.
  warp_affine: bilinear, zero-filled `cv2.warpAffine` equivalent in JAX.
  augment: the JAX backend.
  host_augmenter: the albumentations backend.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from uadjax.data.preprocess import minmax

PARAM_NAMES = (
  'flip',  # bool: mirror left-right
  'apply_affine',  # bool: False gives the identity matrix
  'angle',  # degrees, positive = counter-clockwise on screen
  'tx',  # fraction of the width, positive = to the right
  'ty',  # fraction of the height, positive = down
  'scale',  # isotropic factor, as torchvision's RandomAffine
  'shear_x',  # degrees
  'shear_y',  # degrees
  'brightness',  # multiplicative factor
  'contrast',  # blend factor towards the mean gray
  'brightness_first',  # bool: jitter order (torchvision shuffles its colour ops per image)
)

# torchvision's rgb_to_grayscale weights, used for the contrast mean of 3-channel images.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def default_config() -> ml_collections.ConfigDict:
  """The study's head-CT augmentation (torchvision values); 0 or scale (1, 1) disables a part.

  Fields:
    backend: 'jax' (`augment`, on the device) or 'albumentations' (`host_augmenter`).
    hflip: probability of a horizontal flip.
    affine_p: probability that the affine transform is applied to an image.
    rotate: rotation range in degrees, uniform in [-rotate, rotate].
    translate: translation range as a fraction of width (x) and height (y), each independently.
    scale: isotropic scale range (lo, hi).
    shear: shear range in degrees, uniform in [-shear, shear] for x and for y independently.
    brightness: brightness factor uniform in [max(0, 1 - b), 1 + b] (torchvision's ColorJitter).
    contrast: contrast factor uniform in [max(0, 1 - c), 1 + c] (torchvision's ColorJitter).
    rescale: min-max each image to [0, 1] after augmenting it, as the study did.
  """
  return ml_collections.ConfigDict(
    dict(
      backend='jax',
      hflip=0.5,
      affine_p=1.0,
      rotate=15.0,
      translate=0.01,
      scale=(0.98, 1.02),
      shear=5.0,
      brightness=0.05,
      contrast=0.05,
      rescale=True,
    )
  )


def _has_affine(cfg) -> bool:
  """Whether the configured affine can differ from the identity (a static, trace-time check)."""
  lo, hi = cfg.scale
  ranges = (cfg.rotate, cfg.translate, cfg.shear, hi - lo, abs(lo - 1.0))
  return cfg.affine_p > 0 and any(r != 0 for r in ranges)


def sample_params(key: jax.Array, n: int, cfg) -> dict[str, jax.Array]:
  """Draws per-image augmentation parameters, uniform in the ranges of `cfg`.

  All parameters come from one (len(PARAM_NAMES), n) uniform draw, one row each: a single
  threefry call compiles in a fraction of the time of one call per parameter, and disabling one
  part of the config leaves the draws of the others unchanged. A disabled part gives its neutral
  value exactly (angle 0, scale 1, ...).

  Args:
    key: a PRNG key.
    n: number of images.
    cfg: an augmentation config (see `default_config`); read as Python constants.

  Returns:
    A dict keyed by `PARAM_NAMES` of (n,) arrays: bool for flip, apply_affine and
    brightness_first, float32 otherwise.
  """
  rows = dict(zip(PARAM_NAMES, jax.random.uniform(key, (len(PARAM_NAMES), n)), strict=True))

  def uniform(name, lo, hi):
    return lo + (hi - lo) * rows[name]

  def bernoulli(name, p):
    return rows[name] < p

  scale_lo, scale_hi = cfg.scale
  return {
    'flip': bernoulli('flip', cfg.hflip),
    'apply_affine': bernoulli('apply_affine', cfg.affine_p),
    'angle': uniform('angle', -cfg.rotate, cfg.rotate),
    'tx': uniform('tx', -cfg.translate, cfg.translate),
    'ty': uniform('ty', -cfg.translate, cfg.translate),
    'scale': uniform('scale', scale_lo, scale_hi),
    'shear_x': uniform('shear_x', -cfg.shear, cfg.shear),
    'shear_y': uniform('shear_y', -cfg.shear, cfg.shear),
    'brightness': uniform('brightness', max(0.0, 1.0 - cfg.brightness), 1.0 + cfg.brightness),
    'contrast': uniform('contrast', max(0.0, 1.0 - cfg.contrast), 1.0 + cfg.contrast),
    'brightness_first': bernoulli('brightness_first', 0.5),
  }


def affine_matrices(params: dict[str, jax.Array], height: int, width: int) -> jax.Array:
  """Forward (n, 2, 3) float32 matrices in OpenCV's `warpAffine` convention.

  A matrix maps source pixel coordinates (x, y) to destination coordinates; pixel centres sit at
  integer coordinates, x to the right, y down. The geometry is albumentations' `A.Affine`
  (`create_affine_transformation_matrix` with its `center` shift): about c = (w/2 - 0.5,
  h/2 - 0.5), M = T(c + t) @ Sh @ R @ S @ T(-c), with S = scale, R = [[cos a, sin a],
  [-sin a, cos a]], Sh = [[1, tan shear_x], [tan shear_y, 1]] and t = (tx * w, ty * h) pixels.
  (albumentations negates the shear it samples; with symmetric ranges that changes nothing.)
  Images whose `apply_affine` is False get the identity.

  Args:
    params: the dict from `sample_params` (only the geometric keys are read).
    height: image height in pixels.
    width: image width in pixels.
  """
  angle = jnp.deg2rad(params['angle'].astype(jnp.float32))
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  scale = params['scale'].astype(jnp.float32)
  shx = jnp.tan(jnp.deg2rad(params['shear_x'].astype(jnp.float32)))
  shy = jnp.tan(jnp.deg2rad(params['shear_y'].astype(jnp.float32)))
  # Linear part Sh @ R @ S, written out so it stays elementwise over the batch.
  a00 = (cos - shx * sin) * scale
  a01 = (sin + shx * cos) * scale
  a10 = (shy * cos - sin) * scale
  a11 = (shy * sin + cos) * scale
  cx, cy = width / 2 - 0.5, height / 2 - 0.5
  b0 = cx + params['tx'] * width - (a00 * cx + a01 * cy)
  b1 = cy + params['ty'] * height - (a10 * cx + a11 * cy)
  m = jnp.stack([jnp.stack([a00, a01, b0], -1), jnp.stack([a10, a11, b1], -1)], -2)
  identity = jnp.eye(2, 3, dtype=jnp.float32)
  return jnp.where(params['apply_affine'][:, None, None], m, identity)


def warp_affine(images: jax.Array, matrices: jax.Array) -> jax.Array:
  """Bilinear affine warp with zero fill, per image: JAX's `cv2.warpAffine`.

  Equivalent to `cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR,
  borderMode=cv2.BORDER_CONSTANT, borderValue=0)` for each image: every destination pixel reads
  the source at M^-1 (x, y) from its 4 neighbours, and neighbours outside the image count as 0.
  This samples at exact float positions. OpenCV 5 does too for float32 images with 1, 3 or 4
  channels (agreement ~1e-5); OpenCV 4, and OpenCV 5 for other channel counts, rounds positions
  to 1/32 pixel, so those differ by up to 1/64 pixel times the local gradient.

  Args:
    images: (n, h, w, c) images of any float dtype; the math runs in float32.
    matrices: (n, 2, 3) forward matrices (see `affine_matrices`).

  Returns:
    The warped images, same shape and dtype as `images`.
  """
  n, h, w, c = images.shape
  flat = images.astype(jnp.float32).reshape(n, h * w, c)
  m = matrices.astype(jnp.float32)
  a00, a01, b0 = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
  a10, a11, b1 = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
  # Invert the 2x2 part in closed form: batched and cheaper than jnp.linalg.inv.
  det = a00 * a11 - a01 * a10
  i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
  expand = lambda v: v[:, None, None]
  ys, xs = jnp.meshgrid(
    jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing='ij'
  )
  dx, dy = xs[None] - expand(b0), ys[None] - expand(b1)
  sx = expand(i00) * dx + expand(i01) * dy
  sy = expand(i10) * dx + expand(i11) * dy
  x0f, y0f = jnp.floor(sx), jnp.floor(sy)
  fx, fy = sx - x0f, sy - y0f
  x0, y0 = x0f.astype(jnp.int32), y0f.astype(jnp.int32)

  def tap(yi, xi, weight):
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    index = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
    values = jnp.take_along_axis(flat, index.reshape(n, h * w, 1), axis=1)
    # where, not a product: a non-finite weight from a degenerate matrix must not leak in.
    weight = jnp.where(inside, weight, 0.0).reshape(n, h * w, 1)
    return values * weight

  out = (
    tap(y0, x0, (1 - fx) * (1 - fy))
    + tap(y0, x0 + 1, fx * (1 - fy))
    + tap(y0 + 1, x0, (1 - fx) * fy)
    + tap(y0 + 1, x0 + 1, fx * fy)
  )
  return out.reshape(n, h, w, c).astype(images.dtype)


def _per_image(v: jax.Array) -> jax.Array:
  """(n,) -> (n, 1, 1, 1), to broadcast a per-image factor over NHWC."""
  return v[:, None, None, None]


def _adjust_brightness(x: jax.Array, factor: jax.Array) -> jax.Array:
  """torchvision's adjust_brightness on float images: scale, then clip to [0, 1]."""
  return jnp.clip(x * _per_image(factor), 0.0, 1.0)


def _adjust_contrast(x: jax.Array, factor: jax.Array) -> jax.Array:
  """torchvision's adjust_contrast: blend with the image's mean gray, then clip to [0, 1].

  The mean gray of 3-channel images uses torchvision's luminance weights; for any other channel
  count (torchvision accepts only 1 or 3) it is the plain mean over all channels.
  """
  if x.shape[-1] == 3:
    gray = x @ jnp.asarray(_GRAY_WEIGHTS, jnp.float32)
    mean = gray.mean(axis=(1, 2))[:, None, None, None]
  else:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
  f = _per_image(factor)
  return jnp.clip(f * x + (1.0 - f) * mean, 0.0, 1.0)


def augment(key: jax.Array, images: jax.Array, cfg) -> jax.Array:
  """The JAX backend: flip, affine, brightness and contrast, then min-max if `cfg.rescale`.

  Pure and jit-compatible with `cfg` closed over as Python constants (parts set to 0 are left out
  of the trace); batched over the leading axis and safe under `jax.vmap` over (key, images).

  Args:
    key: a PRNG key; the same key gives the same output.
    images: (n, h, w, c) images in [0, 1], any float dtype, any h, w, c.
    cfg: an augmentation config (see `default_config`).

  Returns:
    Augmented images, same shape and dtype; the math runs in float32.
  """
  n, h, w, _ = images.shape
  params = sample_params(key, n, cfg)
  x = images.astype(jnp.float32)
  if cfg.hflip > 0:
    x = jnp.where(_per_image(params['flip']), x[:, :, ::-1], x)
  if _has_affine(cfg):
    x = warp_affine(x, affine_matrices(params, h, w))
  if cfg.brightness > 0 and cfg.contrast > 0:
    # torchvision applies its colour ops in a random order per call; with clipping the two
    # orders differ slightly, so both are computed and one is picked per image.
    b_then_c = _adjust_contrast(_adjust_brightness(x, params['brightness']), params['contrast'])
    c_then_b = _adjust_brightness(_adjust_contrast(x, params['contrast']), params['brightness'])
    x = jnp.where(_per_image(params['brightness_first']), b_then_c, c_then_b)
  elif cfg.brightness > 0:
    x = _adjust_brightness(x, params['brightness'])
  elif cfg.contrast > 0:
    x = _adjust_contrast(x, params['contrast'])
  if cfg.rescale:
    x = minmax(x)
  return x.astype(images.dtype)


def _albumentations_pipeline(cfg, jitter: bool):
  """An `A.Compose` of flip, affine and (if `jitter`) ColorJitter for the host backend."""
  # Imported here so that the JAX backend does not pay for importing albumentations and cv2.
  import albumentations as A
  import cv2

  class _SubpixelAffine(A.Affine):
    """`A.Affine` whose percent translation is not truncated to whole pixels.

    albumentations 2.0.8 turns translate_percent into `int(fraction * size)` pixels, so the
    study's +-1 % of 64 px never moves at all; this keeps the fraction (OpenCV warps sub-pixel
    shifts fine). Same draws, in the same order, as the parent.
    """

    def _get_translate_params(self, image_shape):
      height, width = image_shape[:2]
      fx = self.py_random.uniform(*self.translate_percent['x'])
      fy = self.py_random.uniform(*self.translate_percent['y'])
      return {'x': fx * width, 'y': fy * height}

  transforms = []
  if cfg.hflip > 0:
    transforms.append(A.HorizontalFlip(p=cfg.hflip))
  if _has_affine(cfg):
    transforms.append(
      _SubpixelAffine(
        scale=tuple(cfg.scale),
        keep_ratio=True,  # torchvision's scale is isotropic
        translate_percent=(-cfg.translate, cfg.translate),
        rotate=(-cfg.rotate, cfg.rotate),
        shear=(-cfg.shear, cfg.shear),  # a tuple: x and y are drawn independently
        interpolation=cv2.INTER_LINEAR,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        p=cfg.affine_p,
      )
    )
  if jitter:
    # A.ColorJitter implements torchvision's float semantics (multiply / blend with the mean
    # gray, clip to [0, 1], random order); saturation and hue 0 make those two no-ops.
    transforms.append(
      A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast, saturation=0, hue=0, p=1)
    )
  return A.Compose(transforms)


def _numpy_jitter(image: np.ndarray, rng: np.random.Generator, cfg) -> np.ndarray:
  """Brightness/contrast for channel counts A.ColorJitter rejects (not 1 or 3).

  Same semantics as the JAX backend: factors uniform in [max(0, 1 - v), 1 + v], contrast blends
  with the mean over all pixels and channels, clip to [0, 1] after each, random order.
  """
  b = rng.uniform(max(0.0, 1.0 - cfg.brightness), 1.0 + cfg.brightness)
  c = rng.uniform(max(0.0, 1.0 - cfg.contrast), 1.0 + cfg.contrast)
  brightness = lambda x: np.clip(x * b, 0.0, 1.0)
  contrast = lambda x: np.clip(c * x + (1.0 - c) * x.mean(), 0.0, 1.0)
  ops = (brightness, contrast) if rng.random() < 0.5 else (contrast, brightness)
  for op in ops:
    image = op(image)
  return image.astype(np.float32)


def host_augmenter(cfg) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
  """The albumentations backend: returns `fn(images, rng) -> images` on numpy arrays.

  `images` are (n, h, w, c) float32 in [0, 1], any c; each image gets its own draw. The
  albumentations random state is reseeded from `rng` on every call, so the same generator state
  gives the same output, and successive calls differ.

  Seeding note: albumentations 2.0.8's `Compose(seed=...)` / `set_random_seed` hands every child
  transform a generator with the same seed, so their streams are identical (two p=0.5 transforms
  then fire together every time). This sets one shared state with `set_random_state` instead.

  Args:
    cfg: an augmentation config (see `default_config`).
  """
  jitter = cfg.brightness > 0 or cfg.contrast > 0
  pipelines = {}  # by whether A.ColorJitter accepts the channel count

  def apply(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    colour_ok = images.shape[-1] in (1, 3)
    if colour_ok not in pipelines:
      pipelines[colour_ok] = _albumentations_pipeline(cfg, jitter and colour_ok)
    pipeline = pipelines[colour_ok]
    seed = int(rng.integers(2**63))
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    jitter_rng = np.random.default_rng([seed, 1])
    out = []
    for image in images:
      image = pipeline(image=image)['image']
      if jitter and not colour_ok:
        image = _numpy_jitter(image, jitter_rng, cfg)
      out.append(image)
    out = np.stack(out).reshape(images.shape)
    if cfg.rescale:
      out = minmax(out)
    return out.astype(np.float32)

  return apply
