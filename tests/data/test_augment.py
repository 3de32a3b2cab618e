"""Tests for uadjax.data.augment: the warp against OpenCV, the sampled ranges, both backends."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from albumentations.augmentations.geometric import functional as fgeometric

from uadjax.data import augment as aug


def _smooth_images(n, h, w, c, seed=0):
  """Sums of Gaussian blobs, max 1: smooth like CT slices, so OpenCV's 1/32-pixel rounding of
  sample positions (2 channels) stays small against the test tolerance."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  images = np.zeros((n, h, w, c), np.float32)
  for i in range(n):
    for ch in range(c):
      for _ in range(6):
        cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 10)
        images[i, ..., ch] += rng.uniform(0.3, 1) * np.exp(
          -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s)
        )
    images[i] /= images[i].max()
  return images


def _params(**values):
  """A one-image parameter dict for `affine_matrices`; unspecified parts are neutral."""
  neutral = dict(angle=0.0, tx=0.0, ty=0.0, scale=1.0, shear_x=0.0, shear_y=0.0)
  neutral.update(values)
  params = {k: jnp.asarray([v], jnp.float32) for k, v in neutral.items()}
  params['apply_affine'] = jnp.asarray([True])
  return params


def _jit_augment(cfg):
  """`augment` jitted with `cfg` closed over, as the trainer uses it (eager is slow to dispatch)."""
  return jax.jit(lambda key, images: aug.augment(key, images, cfg))


def _cv2_warp(image, matrix):
  h, w, c = image.shape
  out = cv2.warpAffine(
    image,
    np.asarray(matrix, np.float64),
    (w, h),
    flags=cv2.INTER_LINEAR,
    borderMode=cv2.BORDER_CONSTANT,
    borderValue=0,
  )
  return out.reshape(h, w, c)  # OpenCV drops a trailing channel axis of 1


CASES = {
  'rotation': dict(angle=15.0),
  'translation': dict(tx=0.03, ty=-0.02),
  'scale_up': dict(scale=1.3),
  'scale_down': dict(scale=0.8),
  'shear': dict(shear_x=8.0, shear_y=-5.0),
  'combined': dict(angle=-12.0, tx=0.05, ty=0.02, scale=0.9, shear_x=4.0, shear_y=3.0),
}
# One image per case, so each (shape, channels) compiles the warp once.
ALL_CASES = jax.tree.map(lambda *v: jnp.concatenate(v), *[_params(**c) for c in CASES.values()])
_warp = jax.jit(aug.warp_affine)


@pytest.mark.parametrize('channels', [1, 2, 3])
@pytest.mark.parametrize('shape', [(64, 64), (48, 80), (37, 53)])
def test_warp_matches_cv2(shape, channels):
  h, w = shape
  matrices = aug.affine_matrices(ALL_CASES, h, w)
  images = _smooth_images(len(CASES), h, w, channels, seed=h + channels)
  ours = np.asarray(_warp(jnp.asarray(images), matrices))
  for i, case in enumerate(CASES):
    error = np.abs(ours[i] - _cv2_warp(images[i], matrices[i]))
    # Where OpenCV rounds sample positions to 1/32 px (2 channels), the error is at most
    # 1/64 px times the jump between neighbours in x plus in y; the jumps of 1 are at the
    # zero-filled border, and they are few, hence the far smaller mean.
    assert error.max() < 2e-2, case
    assert error.mean() < 1e-3, case


def test_warp_matches_cv2_float_path_on_noise():
  # OpenCV 5 samples float32 images with 1 or 3 channels at exact positions, so on white noise
  # (the worst case for position rounding) agreement shows the geometry itself is exact.
  h, w = 37, 53
  matrices = aug.affine_matrices(ALL_CASES, h, w)
  noise = np.random.default_rng(0).uniform(0, 1, (len(CASES), h, w, 1)).astype(np.float32)
  ours = np.asarray(_warp(jnp.asarray(noise), matrices))
  exact = int(cv2.__version__.split('.')[0]) >= 5
  for i, case in enumerate(CASES):
    error = np.abs(ours[i] - _cv2_warp(noise[i], matrices[i]))
    assert error.max() < (1e-4 if exact else 4e-2), case


@pytest.mark.parametrize('case', CASES)
def test_matrices_match_albumentations(case):
  h, w = 48, 80
  v = dict(angle=0.0, tx=0.0, ty=0.0, scale=1.0, shear_x=0.0, shear_y=0.0) | CASES[case]
  expected = fgeometric.create_affine_transformation_matrix(
    translate={'x': v['tx'] * w, 'y': v['ty'] * h},
    shear={'x': v['shear_x'], 'y': v['shear_y']},
    scale={'x': v['scale'], 'y': v['scale']},
    rotate=v['angle'],
    shift=fgeometric.center((h, w)),
  )
  np.testing.assert_allclose(aug.affine_matrices(_params(**v), h, w)[0], expected[:2], atol=1e-5)


def test_identity_warp_and_apply_affine_false_are_exact():
  images = jnp.asarray(_smooth_images(2, 20, 30, 2))
  params = jax.tree.map(lambda v: jnp.concatenate([v, v]), _params(**CASES['combined']))
  params['apply_affine'] = jnp.asarray([False, False])
  matrices = aug.affine_matrices(params, 20, 30)
  np.testing.assert_array_equal(matrices, np.broadcast_to(np.eye(2, 3), (2, 2, 3)))
  np.testing.assert_array_equal(_warp(images, matrices), images)


def test_sampled_params_in_ranges_and_cover_them():
  cfg = aug.default_config()
  n = 20_000
  p = jax.device_get(aug.sample_params(jax.random.key(0), n, cfg))
  assert set(p) == set(aug.PARAM_NAMES)
  bounds = {
    'angle': (-cfg.rotate, cfg.rotate),
    'tx': (-cfg.translate, cfg.translate),
    'ty': (-cfg.translate, cfg.translate),
    'scale': cfg.scale,
    'shear_x': (-cfg.shear, cfg.shear),
    'shear_y': (-cfg.shear, cfg.shear),
    'brightness': (1 - cfg.brightness, 1 + cfg.brightness),
    'contrast': (1 - cfg.contrast, 1 + cfg.contrast),
  }
  for name, (lo, hi) in bounds.items():
    values = p[name]
    assert values.shape == (n,) and values.dtype == np.float32, name
    assert lo - 1e-6 <= values.min() and values.max() <= hi + 1e-6, name
    slack = 0.01 * (hi - lo)
    assert values.min() < lo + slack and values.max() > hi - slack, name
    assert abs(values.mean() - (lo + hi) / 2) < 0.02 * (hi - lo), name
  assert abs(p['flip'].mean() - cfg.hflip) < 0.02
  assert abs(p['brightness_first'].mean() - 0.5) < 0.02
  assert p['apply_affine'].all()  # affine_p = 1
  # Parameters are independent: flip and jitter order are drawn from different rows.
  assert abs(np.corrcoef(p['flip'], p['brightness_first'])[0, 1]) < 0.05


def test_disabled_parts_are_neutral():
  cfg = aug.default_config()
  cfg.update(
    dict(
      hflip=0.0,
      affine_p=0.0,
      rotate=0.0,
      translate=0.0,
      scale=(1.0, 1.0),
      shear=0.0,
      brightness=0.0,
      contrast=0.0,
      rescale=False,
    )
  )
  p = aug.sample_params(jax.random.key(1), 100, cfg)
  assert not p['flip'].any() and not p['apply_affine'].any()
  for name in ('angle', 'tx', 'ty', 'shear_x', 'shear_y'):
    assert (p[name] == 0).all(), name
  for name in ('scale', 'brightness', 'contrast'):
    assert (p[name] == 1).all(), name
  images = jnp.asarray(_smooth_images(3, 16, 24, 2))
  np.testing.assert_array_equal(_jit_augment(cfg)(jax.random.key(2), images), images)


def test_fundus_affine_probability():
  cfg = aug.default_config()
  cfg.update(
    dict(
      affine_p=0.5,
      rotate=3.0,
      translate=0.05,
      scale=(0.95, 1.05),
      shear=0.0,
      brightness=0.0,
      contrast=0.0,
    )
  )
  p = jax.device_get(aug.sample_params(jax.random.key(3), 20_000, cfg))
  assert abs(p['apply_affine'].mean() - 0.5) < 0.02
  assert (p['shear_x'] == 0).all() and (p['shear_y'] == 0).all()


@pytest.mark.parametrize('shape', [(4, 64, 64, 1), (3, 40, 56, 2), (2, 32, 32, 3)])
def test_augment_shape_dtype_range(shape):
  cfg = aug.default_config()
  images = jnp.asarray(_smooth_images(*shape))
  fn = _jit_augment(cfg)
  out = fn(jax.random.key(0), images)
  assert out.shape == images.shape and out.dtype == images.dtype
  assert float(out.min()) == 0.0 and float(out.max()) == 1.0  # min-max after augmenting


def test_augment_keeps_bfloat16():
  images = jnp.asarray(_smooth_images(2, 16, 16, 1), jnp.bfloat16)
  out = _jit_augment(aug.default_config())(jax.random.key(0), images)
  assert out.dtype == jnp.bfloat16 and bool(jnp.isfinite(out).all())


def test_constant_image_stays_finite():
  cfg = aug.default_config()
  images = jnp.stack([jnp.full((32, 32, 1), v) for v in (0.0, 0.5, 1.0)])
  out = _jit_augment(cfg)(jax.random.key(0), images)
  assert bool(jnp.isfinite(out).all())


def test_keys_jit_and_vmap():
  cfg = aug.default_config()
  images = jnp.asarray(_smooth_images(6, 32, 40, 1))
  fn = _jit_augment(cfg)
  a = fn(jax.random.key(0), images)
  np.testing.assert_array_equal(a, fn(jax.random.key(0), images))
  assert float(jnp.abs(a - fn(jax.random.key(1), images)).max()) > 0.1

  folds = 3
  keys = jax.random.split(jax.random.key(4), folds)
  stacked = jnp.stack([images, images[::-1], images * 0.5])
  batched = jax.jit(jax.vmap(lambda key, x: aug.augment(key, x, cfg)))(keys, stacked)
  assert batched.shape == stacked.shape
  for i in range(folds):
    np.testing.assert_allclose(batched[i], fn(keys[i], stacked[i]), atol=1e-5)


@pytest.mark.parametrize('channels', [1, 2, 3])
def test_host_backend(channels):
  cfg = aug.default_config()
  cfg.backend = 'albumentations'
  fn = aug.host_augmenter(cfg)
  images = _smooth_images(4, 40, 48, channels)
  a = fn(images, np.random.default_rng(7))
  assert a.shape == images.shape and a.dtype == np.float32
  assert a.min() >= 0.0 and a.max() <= 1.0
  np.testing.assert_array_equal(a, fn(images, np.random.default_rng(7)))
  assert np.abs(a - fn(images, np.random.default_rng(8))).max() > 0.1


def test_host_backend_translates_subpixel():
  # albumentations truncates translate_percent to whole pixels: +-1 % of 64 px would never move.
  cfg = aug.default_config()
  cfg.update(
    dict(
      hflip=0.0,
      rotate=0.0,
      shear=0.0,
      scale=(1.0, 1.0),
      brightness=0.0,
      contrast=0.0,
      rescale=False,
    )
  )
  images = _smooth_images(8, 64, 64, 1)
  out = aug.host_augmenter(cfg)(images, np.random.default_rng(0))
  assert (np.abs(out - images).max(axis=(1, 2, 3)) > 1e-3).all()


def test_host_backend_draws_are_not_correlated():
  # Compose(seed=...) in albumentations 2.0.8 gives every transform the same stream, so a flip
  # and an affine with the same p would always fire together; all four combinations must occur.
  cfg = aug.default_config()
  cfg.update(
    dict(
      affine_p=0.5,
      rotate=0.0,
      translate=0.2,
      scale=(1.0, 1.0),
      shear=0.0,
      brightness=0.0,
      contrast=0.0,
      rescale=False,
    )
  )
  image = np.zeros((1, 16, 16, 1), np.float32)
  image[0, 4, 3] = 1.0
  fn = aug.host_augmenter(cfg)
  seen = set()
  for seed in range(64):
    out = fn(image, np.random.default_rng(seed))[0, ..., 0]
    moved = not (np.allclose(out, image[0, ..., 0]) or np.allclose(out, image[0, :, ::-1, 0]))
    _, col = np.unravel_index(out.argmax(), out.shape)
    seen.add((bool(col > 7), moved))
  assert len(seen) == 4
