"""Class-activation maps: each method finds the region a known classifier decides on."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uadjax.evaluation.cam import METHODS, CamFns, cam, flax_fns, fullgrad_terms
from uadjax.families.densenet.model import DenseNet
from uadjax.reports.images import blend_heatmap

SIZE = 16
# Top-left corners of the class-1 square, all inside the top-left quadrant (8x8).
SQUARES = ((2, 2), (4, 0), (0, 4))
DISTRACTOR = (10, 10)  # a dark square in the bottom-right quadrant of every image
CLASS_DISCRIMINATIVE = ('gradcam', 'gradcam++', 'xgradcam', 'layercam', 'fullgrad', 'scorecam')


def _images(seed=0):
  """Class-1 images: a bright 4x4 square in the top-left quadrant, a dark one bottom-right."""
  rng = np.random.default_rng(seed)
  x = rng.normal(0, 0.05, (len(SQUARES), SIZE, SIZE, 1)).astype(np.float32)
  for i, (r, c) in enumerate(SQUARES):
    x[i, r : r + 4, c : c + 4] = 1.0
  r, c = DISTRACTOR
  x[:, r : r + 4, c : c + 4] = -1.0
  return jnp.asarray(x)


# A classifier with hand-set weights. Features on a 2x2-pooled grid (8x8): channel 0 detects
# bright pixels, relu(p - 0.5); channel 1 dark ones, relu(-p - 0.5), present in every image.
# The head's class-1 logit reads channel 0 only: 100 * mean(A0) - 1; class 0 is its mirror.
VARIABLES = {
  'kernel': jnp.array([[1.0, -1.0]]),
  'bias': jnp.array([-0.5, -0.5]),
  'w': jnp.array([[-100.0, 100.0], [0.0, 0.0]]),
  'c': jnp.array([1.0, -1.0]),
}


def _pool(x):
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _head(v, f):
  return f.mean(axis=(1, 2)) @ v['w'] + v['c']


HAND_SET = CamFns(
  features=lambda v, x: jax.nn.relu(_pool(x) @ v['kernel'] + v['bias']),
  head=_head,
  perturbations=lambda v, x: {'detector': jnp.zeros((x.shape[0], SIZE // 2, SIZE // 2, 2))},
  perturbed_logits=lambda v, x, p: _head(
    v, jax.nn.relu(_pool(x) @ v['kernel'] + v['bias'] + p['detector'])
  ),
  biases=lambda v: {'detector': v['bias']},
)


def _region(r, c, size=4):
  mask = np.zeros((SIZE, SIZE), bool)
  mask[r : r + size, c : c + size] = True
  return mask


def test_the_hand_set_classifier_decides_on_the_square():
  images = _images()
  logits = HAND_SET.head(VARIABLES, HAND_SET.features(VARIABLES, images))
  assert (np.argmax(logits, -1) == 1).all()
  without = images.at[:, :8, :8].set(0.0)
  logits = HAND_SET.head(VARIABLES, HAND_SET.features(VARIABLES, without))
  assert (np.argmax(logits, -1) == 0).all()


@pytest.mark.parametrize('method', CLASS_DISCRIMINATIVE)
def test_class_discriminative_maps_point_at_the_class_region(method):
  images = _images()
  maps = np.asarray(cam(method, HAND_SET, VARIABLES, images, jnp.ones(len(SQUARES), jnp.int32)))
  assert maps.shape == (len(SQUARES), SIZE, SIZE) and maps.dtype == np.float32
  assert maps.min() >= 0 and maps.max() <= 1
  distractor = _region(*DISTRACTOR)
  for m, (r, c) in zip(maps, SQUARES, strict=True):
    square = _region(r, c)
    inside = m[square].mean()
    # The dark square is as strong an activation as the bright one, but not the class's.
    assert inside > 2 * m[distractor].mean(), (method, inside, m[distractor].mean())
    assert inside > 2 * m[~square & ~distractor].mean()
    peak = np.unravel_index(np.argmax(m), m.shape)
    assert peak[0] < 8 and peak[1] < 8, (method, peak)


def _reference_weights(method, a, g):
  """pytorch-grad-cam's formulas in numpy, for one image: a, g (h, w, c) -> map (h, w)."""
  if method == 'layercam':
    return (np.maximum(g, 0) * a).sum(-1)
  if method == 'gradcam':
    w = g.mean(axis=(0, 1))
  elif method == 'gradcam++':
    sum_a = a.sum(axis=(0, 1))
    alpha = g**2 / (2 * g**2 + sum_a * g**3 + 1e-6)
    w = (np.maximum(g, 0) * np.where(g != 0, alpha, 0)).sum(axis=(0, 1))
  else:  # xgradcam
    w = (g * a / (a.sum(axis=(0, 1)) + 1e-7)).sum(axis=(0, 1))
  return (a * w).sum(-1)


@pytest.mark.parametrize('method', ('gradcam', 'gradcam++', 'xgradcam', 'layercam'))
def test_gradient_weights_match_the_reference_formulas(method):
  # Activations are the images themselves and the head is linear with a weight per pixel, so
  # the gradient for class t is exactly head[t]: spatially varying, of both signs.
  rng = np.random.default_rng(3)
  acts = rng.uniform(0, 1, (2, 6, 6, 4)).astype(np.float32)
  head = rng.normal(size=(3, 6, 6, 4)).astype(np.float32)
  fns = CamFns(features=lambda v, x: x, head=lambda v, f: jnp.einsum('nhwc,khwc->nk', f, v))
  targets = np.array([2, 0])
  maps = np.asarray(cam(method, fns, jnp.asarray(head), jnp.asarray(acts), jnp.asarray(targets)))
  for m, a, t in zip(maps, acts, targets, strict=True):
    expected = np.maximum(_reference_weights(method, a, head[t]), 0)
    expected = expected - expected.min()
    expected = expected / (expected.max() + 1e-7)
    assert expected.max() > 0.99  # a non-trivial map
    np.testing.assert_allclose(m, expected, rtol=1e-4, atol=1e-5)


def test_scorecam_matches_a_channel_by_channel_loop():
  # 5 channels in chunks of 2: the padded last chunk and the chunk order are both checked.
  rng = np.random.default_rng(4)
  images = rng.uniform(0, 1, (2, 6, 6, 5)).astype(np.float32)
  # A constant channel: skipped (weight 0); a weight would only add a constant to the map.
  head = rng.normal(size=(3, 6, 6, 5)).astype(np.float32)
  fns = CamFns(features=lambda v, x: x, head=lambda v, f: jnp.einsum('nhwc,khwc->nk', f, v))
  targets = np.array([1, 2])
  maps = cam('scorecam', fns, jnp.asarray(head), jnp.asarray(images), targets, scorecam_batch=2)
  for m, x, t in zip(np.asarray(maps), images, targets, strict=True):
    weights = np.zeros(5)
    for k in range(5):
      a = x[..., k]
      if a.max() == a.min():
        continue
      masked = x * ((a - a.min()) / (a.max() - a.min()))[..., None]
      logits = np.einsum('hwc,khwc->k', masked, head)
      weights[k] = np.exp(logits[t]) / np.exp(logits).sum()
    expected = np.maximum((x * weights).sum(-1), 0)
    expected = (expected - expected.min()) / (expected - expected.min()).max()
    np.testing.assert_allclose(m, expected, rtol=1e-4, atol=1e-5)


def test_the_target_class_selects_the_map():
  images = _images()
  ones = jnp.ones(len(SQUARES), jnp.int32)
  for method in ('gradcam', 'layercam'):
    # Class 0's evidence is the absence of the square: no positive gradient anywhere.
    zero = np.asarray(cam(method, HAND_SET, VARIABLES, images, 0 * ones))
    assert np.abs(zero).max() < 1e-6
  # targets=None takes the predicted class, 1 here.
  np.testing.assert_allclose(
    cam('gradcam', HAND_SET, VARIABLES, images), cam('gradcam', HAND_SET, VARIABLES, images, ones)
  )


def test_eigencam_is_a_valid_map_on_the_active_squares():
  images = _images()
  maps = np.asarray(cam('eigencam', HAND_SET, VARIABLES, images, jnp.ones(3, jnp.int32)))
  assert maps.shape == (3, SIZE, SIZE) and np.isfinite(maps).all()
  assert maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0.9
  # Not class-discriminative, but its sign follows the activations: the two squares (where
  # anything is active) outweigh the background.
  for m, (r, c) in zip(maps, SQUARES, strict=True):
    active = _region(r, c) | _region(*DISTRACTOR)
    assert m[active].mean() > m[~active].mean()


def test_eigencam_sign_follows_the_activations():
  # Each channel is a positive multiple of one pattern (plus noise), so the first principal
  # component is the pattern up to the SVD's arbitrary sign. Image 0's pattern is a blob, image
  # 1's the blob's complement: their centred activations are opposite, so one fixed sign cannot
  # serve both; the map must be high wherever the activations are.
  yy, xx = np.mgrid[:SIZE, :SIZE]
  blob = np.exp(-((yy - 4.0) ** 2 + (xx - 11.0) ** 2) / 8).astype(np.float32)
  patterns = np.stack([blob, 1 - blob])[..., None] * np.array([1.0, 0.5, 2.0], np.float32)
  noise = np.random.default_rng(0).uniform(0, 0.05, patterns.shape).astype(np.float32)
  fns = CamFns(features=lambda v, x: x, head=lambda v, f: f.mean(axis=(1, 2))[:, :2])
  acts = jnp.asarray(patterns + noise)
  maps = np.asarray(cam('eigencam', fns, {}, acts, jnp.zeros(2, jnp.int32)))
  assert np.unravel_index(np.argmax(maps[0]), blob.shape) == (4, 11)
  assert maps[0][blob > 0.5].mean() > 0.5 and maps[0][blob < 0.01].mean() < 0.1
  assert maps[1][blob > 0.5].mean() < 0.1 and maps[1][blob < 0.01].mean() > 0.5


def _tiny_densenet():
  """A tiny DenseNet with random weights and non-trivial BatchNorm statistics."""
  model = DenseNet(growth_rate=4, block_config=(1, 1), num_init_features=8, bn_size=2)
  x = jnp.zeros((1, 32, 32, 3))
  shapes = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)

  def fill(path, s):
    name = path[-1].key
    if name == 'var':
      return rng.uniform(0.5, 2.0, s.shape).astype(np.float32)
    if name == 'scale':
      return rng.normal(1.0, 0.3, s.shape).astype(np.float32)
    scale = 0.3 if name in ('bias', 'mean') else np.sqrt(2 / np.prod(s.shape[:-1]))
    return (scale * rng.normal(size=s.shape)).astype(np.float32)

  return model, jax.tree_util.tree_map_with_path(fill, shapes)


def test_every_method_on_a_densenet_jits_to_valid_maps():
  model, variables = _tiny_densenet()
  fns = flax_fns(model)
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  targets = jnp.array([0, 1])
  for method in METHODS:
    # scorecam_batch 4 does not divide the 10 channels: the padded chunk is exercised.
    run = jax.jit(functools.partial(cam, method, fns, scorecam_batch=4))
    maps = np.asarray(run(variables, images, targets))
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32, method
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1, method
    # Normalised per image: peak ~1, or all zeros where ReLU left nothing (random weights can
    # give a class only negative evidence). Score-CAM and FullGrad sum non-negative terms.
    peaks = maps.max(axis=(1, 2))
    assert ((peaks > 0.99) | (peaks == 0)).all(), (method, peaks)
    if method in ('scorecam', 'fullgrad', 'eigencam'):
      assert (peaks > 0.99).all(), (method, peaks)


def test_fullgrad_terms_are_complete_on_a_densenet():
  """ReLU, pooling and inference-mode BatchNorm are piecewise linear, so the target logit is
  exactly input * input-gradient + sum of bias * bias-gradient + the classifier's bias: a check
  on every perturbation point and every effective bias."""
  model, variables = _tiny_densenet()
  fns = flax_fns(model)
  images = jax.random.normal(jax.random.PRNGKey(2), (3, 32, 32, 3))
  targets = jnp.array([1, 0, 1])
  # Jitted: differentiating op by op compiles every op on its own (several seconds here).
  dx, dbias, biases = jax.jit(functools.partial(fullgrad_terms, fns))(variables, images, targets)
  logits = jax.jit(functools.partial(model.apply, train=False))(variables, images)
  target_logits = np.asarray(logits)[np.arange(3), targets]
  classifier_bias = np.asarray(variables['params']['classifier']['bias'])[targets]
  per_image = (np.asarray(dx) * np.asarray(images)).sum(axis=(1, 2, 3))
  terms = jax.tree.map(lambda g, b: np.asarray(g * b).sum(axis=(1, 2, 3)), dbias, biases)
  per_image += sum(jax.tree.leaves(terms))
  # The sums must carry the result: the bias terms are far from negligible here.
  assert np.abs(sum(jax.tree.leaves(terms))).max() > 0.1
  np.testing.assert_allclose(per_image + classifier_bias, target_logits, rtol=1e-4, atol=1e-4)


def test_unknown_method_and_missing_fullgrad_functions_raise():
  images = _images()
  with pytest.raises(ValueError, match='gradcam-'):
    cam('gradcam-', HAND_SET, VARIABLES, images, jnp.ones(3, jnp.int32))
  with pytest.raises(ValueError, match='fullgrad'):
    cam('fullgrad', HAND_SET._replace(biases=None), VARIABLES, images, jnp.ones(3, jnp.int32))


def test_overlay_blends_the_colormap_over_the_image():
  from matplotlib import colormaps

  image = np.full((4, 5), 0.5, np.float32)
  heat = np.zeros((4, 5), np.float32)
  heat[1, 2] = 1.0
  out = blend_heatmap(image, heat, alpha=0.4)
  assert out.shape == (4, 5, 3) and out.dtype == np.uint8
  top = np.asarray(colormaps['jet'](1.0)[:3])
  np.testing.assert_allclose(out[1, 2], np.round(255 * (0.6 * 0.5 + 0.4 * top)), atol=1)
  assert (blend_heatmap(image, heat, alpha=0.0) == 128).all()
  rgb = (np.arange(60).reshape(4, 5, 3) * 4).astype(np.uint8)
  np.testing.assert_array_equal(blend_heatmap(rgb, heat, alpha=0.0), rgb)
  with pytest.raises(ValueError, match='does not match'):
    blend_heatmap(image, heat[:3])
