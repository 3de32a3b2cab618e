"""Class-activation maps in JAX: the Grad-CAM family, EigenCAM, Score-CAM and FullGrad.

The model is seen only through pure functions (`CamFns`): the activations of the target layer,
the logits from those activations, and for FullGrad the logits with a zero perturbation added at
every biased layer's output. Gradients come from `jax.grad`, not hooks, so every method is a pure
function of (variables, images, targets) and jits as a whole (no host round trips):

  fns = flax_fns(model)                       # a `DenseNet`, or any module of the same protocol
  maps = jax.jit(functools.partial(cam, 'gradcam', fns))(variables, images, targets)

Each method follows the paper and pytorch-grad-cam's semantics. A class's score is its logit
(pytorch-grad-cam's `ClassifierOutputTarget`); A^k is activation channel k, g^k = dscore/dA^k:

  gradcam    weights w_k = mean over pixels of g^k (Selvaraju et al. 2017).
  gradcam++  w_k = sum over pixels of relu(g) * g^2 / (2 g^2 + sum(A^k) g^3) (Chattopadhay et
             al. 2018, eq. 19, third powers standing in for the exponential's higher derivatives).
  xgradcam   w_k = sum over pixels of g^k A^k / sum(A^k) (Fu et al. 2020).
  layercam   per-pixel weights relu(g^k) (Jiang et al. 2021): the map is sum_k relu(g^k) A^k.
  eigencam   the projection of the centred activations (pixels x channels) on their first right
             singular vector (Muhammad & Yeasin 2020); not class-discriminative.
  scorecam   w_k = softmax(logits(x * M^k))[target], M^k channel k upsampled and min-max
             normalised (Wang et al. 2020, as the authors' code: softmax over classes; a constant
             channel is skipped). pytorch-grad-cam differs here: it softmaxes the target logits
             over the channels.
  fullgrad   |dscore/dx * x| plus, for every biased layer and channel, |b * dscore/db| where b is
             the effective bias and the gradient is at each pixel (Srinivas & Fleuret 2019).

The weighted sum sum_k w_k A^k goes through ReLU, bilinear upsampling to the image size and
min-max normalisation per image, so every map is (n, H, W) float32 in [0, 1].
`uadjax.reports.images.blend_heatmap` draws one over its image.

Attributes:
  METHODS: the method names `cam` accepts.
  CamFns: the model as pure functions.
  flax_fns: `CamFns` of a Flax module with `feature_maps`, `head` and `bias_terms` methods.
  cam: the maps of one method for a batch.
  fullgrad_terms: FullGrad's gradients and biases (its completeness check uses them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

METHODS = ('gradcam', 'gradcam++', 'xgradcam', 'layercam', 'eigencam', 'scorecam', 'fullgrad')

# Keeps min-max normalisation finite on a constant map (pytorch-grad-cam's 1e-7).
_EPS = 1e-7


class CamFns(NamedTuple):
  """A classifier as the pure functions the CAM methods need; images are NHWC.

  Attributes:
    features: (variables, images) -> activations of the target layer, (n, h, w, c).
    head: (variables, activations) -> logits (n, classes); logits = head(features(images)).
    perturbations: (variables, images) -> a pytree of zeros, one (n, h, w, c) leaf per biased
      layer (FullGrad only).
    perturbed_logits: (variables, images, perturbations) -> logits with each perturbation added
      to its layer's output (FullGrad only).
    biases: variables -> the effective bias (c,) of each biased layer, as a pytree of the same
      structure as `perturbations`' (FullGrad only).
  """

  features: Callable[[Any, jax.Array], jax.Array]
  head: Callable[[Any, jax.Array], jax.Array]
  perturbations: Callable[[Any, jax.Array], Any] | None = None
  perturbed_logits: Callable[[Any, jax.Array, Any], jax.Array] | None = None
  biases: Callable[[Any], Any] | None = None


def flax_fns(model) -> CamFns:
  """`CamFns` of a Flax module in inference mode (`train=False`: BatchNorm's running averages).

  The module provides `feature_maps(x, *, train)`, `head(f, *, train)`, `bias_terms()` and a
  `self.perturb(...)` at the output of each biased layer, named so that the 'perturbations'
  collection and `bias_terms()` have the same structure (as
  `uadjax.families.densenet.model.DenseNet`).
  """

  def features(variables, images):
    return model.apply(variables, images, train=False, method='feature_maps')

  def head(variables, f):
    return model.apply(variables, f, train=False, method='head')

  def perturbations(variables, images):
    # Shapes only: `eval_shape` traces the forward pass without running it.
    _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, mutable=['perturbations']), variables, images
    )
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state['perturbations'])

  def perturbed_logits(variables, images, perturbed):
    return model.apply({**variables, 'perturbations': perturbed}, images, train=False)

  def biases(variables):
    return model.apply(variables, method='bias_terms')

  return CamFns(features, head, perturbations, perturbed_logits, biases)


def _target_score(logits, targets):
  """Sum over the batch of each image's target logit: its gradient is per image, as the images
  are independent in inference mode."""
  return jnp.take_along_axis(logits.astype(jnp.float32), targets[:, None], axis=1).sum()


def _normalise(maps, axes=(1, 2)):
  """(m - min) / (max - min + eps) over `axes`: [0, 1), all zeros for a constant map."""
  maps = maps - maps.min(axis=axes, keepdims=True)
  return maps / (maps.max(axis=axes, keepdims=True) + _EPS)


def _resize(maps, size):
  """Bilinear (half-pixel centres, as cv2.resize and torch's align_corners=False) over axes 1, 2."""
  shape = (maps.shape[0], *size, *maps.shape[3:])
  if maps.shape == shape:
    return maps
  return jax.image.resize(maps, shape, 'bilinear')


def _finish(maps, size):
  """ReLU -> upsample to `size` -> min-max normalise per image; (n, h, w) -> (n, *size) float32.

  Normalising once after upsampling equals pytorch-grad-cam's normalise-resize-normalise:
  bilinear weights sum to one, so resizing commutes with the affine normalisation.
  """
  return _normalise(_resize(jax.nn.relu(maps.astype(jnp.float32)), size))


def _activations_and_grads(fns, variables, images, targets):
  """Activations A (n, h, w, c) and g = d(target logit)/dA, both float32."""
  acts = fns.features(variables, images)
  grads = jax.grad(lambda a: _target_score(fns.head(variables, a), targets))(acts)
  return acts.astype(jnp.float32), grads.astype(jnp.float32)


def _weighted(acts, weights):
  """sum_k w_k A^k: (n, h, w, c), (n, c) -> (n, h, w)."""
  return jnp.einsum('nhwc,nc->nhw', acts, weights)


def _gradcam(acts, grads):
  return _weighted(acts, grads.mean(axis=(1, 2)))


def _gradcam_plus_plus(acts, grads):
  g2 = grads**2
  g3 = g2 * grads
  sum_acts = acts.sum(axis=(1, 2), keepdims=True)
  # pytorch-grad-cam's eps 1e-6 in the denominator; alpha is zero where the gradient is.
  alpha = g2 / (2 * g2 + sum_acts * g3 + 1e-6)
  alpha = jnp.where(grads != 0, alpha, 0.0)
  return _weighted(acts, (jax.nn.relu(grads) * alpha).sum(axis=(1, 2)))


def _xgradcam(acts, grads):
  sum_acts = acts.sum(axis=(1, 2), keepdims=True)
  return _weighted(acts, (grads * acts / (sum_acts + _EPS)).sum(axis=(1, 2)))


def _layercam(acts, grads):
  return (jax.nn.relu(grads) * acts).sum(axis=-1)


def _eigencam(acts):
  """Projection on the first principal component of the pixels, sign fixed by the activations.

  An SVD's singular vectors have arbitrary sign; the projection is flipped where it correlates
  negatively with the activation sum over channels, so the map points at what is active (the
  ReLU that follows would otherwise keep the background).
  """
  n, h, w, c = acts.shape
  x = acts.reshape(n, h * w, c)
  # Centring first (as pytorch-grad-cam): otherwise the first component is mostly the mean.
  x = x - x.mean(axis=1, keepdims=True)
  _, _, vt = jnp.linalg.svd(x, full_matrices=False)
  projection = jnp.einsum('npc,nc->np', x, vt[:, 0, :])
  total = acts.reshape(n, h * w, c).sum(axis=-1)
  corr = (projection * (total - total.mean(axis=1, keepdims=True))).sum(axis=1, keepdims=True)
  projection = jnp.where(corr < 0, -projection, projection)
  return projection.reshape(n, h, w)


def _scorecam(fns, variables, images, targets, acts, batch_size):
  """Score-CAM weights, image by image and `batch_size` channels per forward pass.

  Memory is bounded by one forward pass of `batch_size` masked copies of one image, whatever the
  number of images and channels (1024 for DenseNet121).
  """
  _, h, w, c = acts.shape
  size = images.shape[1:3]
  chunks = -(-c // batch_size)
  # Padding channels are constant (zero), so they are skipped like any constant channel.
  padded = jnp.pad(acts, ((0, 0), (0, 0), (0, 0), (0, chunks * batch_size - c)))

  def one_image(args):
    image, a, target = args
    a = a.reshape(h, w, chunks, batch_size).transpose(2, 0, 1, 3)  # (chunks, h, w, batch)

    def one_chunk(chunk):
      up = _resize(chunk[None], size)[0]  # (H, W, batch)
      lo, hi = up.min(axis=(0, 1)), up.max(axis=(0, 1))
      masks = (up - lo) / (hi - lo + _EPS)
      x = image[None] * masks.transpose(2, 0, 1)[..., None]  # (batch, H, W, C)
      logits = fns.head(variables, fns.features(variables, x)).astype(jnp.float32)
      prob = jax.nn.softmax(logits, axis=-1)[:, target]
      # The authors' code skips a channel whose upsampled map is constant.
      return jnp.where(hi > lo, prob, 0.0)

    return jax.lax.map(one_chunk, a).reshape(-1)[:c]

  weights = jax.lax.map(one_image, (images, padded, targets))
  return _weighted(acts, weights)


def fullgrad_terms(fns: CamFns, variables, images, targets):
  """FullGrad's pieces: (d score/d images, d score/d bias perturbations, effective biases).

  For a network of ReLUs, poolings and affine layers (BatchNorm in inference mode) these satisfy
  the full-gradient completeness: score = sum(images * dx) + sum over layers of
  sum(bias * dbias) + the classifier's bias.
  """
  if fns.perturbations is None or fns.perturbed_logits is None or fns.biases is None:
    raise ValueError('fullgrad needs CamFns.perturbations, perturbed_logits and biases')
  zeros = fns.perturbations(variables, images)
  score = lambda x, p: _target_score(fns.perturbed_logits(variables, x, p), targets)
  dx, dbias = jax.grad(score, argnums=(0, 1))(images, zeros)
  return dx, dbias, fns.biases(variables)


def _fullgrad(fns, variables, images, targets):
  """Sum of per-channel normalised |input gradient * input| and |bias * bias gradient| maps.

  Each channel map is min-max normalised at its layer's resolution, summed over channels, and
  only then upsampled: resizing is linear, so this equals pytorch-grad-cam's upsampling of every
  channel (1024 channels at 224x224 for one layer) at a fraction of the memory. Normalising per
  channel cancels |b|, a constant of the channel: the bias only matters where it is zero.
  """
  size = images.shape[1:3]
  dx, dbias, biases = fullgrad_terms(fns, variables, images, targets)
  x = jnp.asarray(images, jnp.float32)
  total = _normalise(jnp.abs(dx.astype(jnp.float32) * x)).sum(axis=-1)
  layers = jax.tree.map(
    lambda g, b: _resize(_normalise(jnp.abs(g.astype(jnp.float32) * b)).sum(axis=-1), size),
    dbias,
    biases,
  )
  total = total + sum(jax.tree.leaves(layers))
  return _normalise(total)


def cam(
  method: str,
  fns: CamFns,
  variables,
  images: jax.Array,
  targets: jax.Array | None = None,
  *,
  scorecam_batch: int = 32,
) -> jax.Array:
  """Class-activation maps of `method` for `images` (n, H, W, C) and their target classes.

  Pure and jit-friendly (`method`, `fns` and `scorecam_batch` static):
  `jax.jit(functools.partial(cam, 'gradcam', fns))(variables, images, targets)`.

  Args:
    method: one of `METHODS`.
    fns: the model (`flax_fns(model)` for a `DenseNet`).
    variables: the model's variables, passed to each of `fns`.
    images: (n, H, W, C) as the model takes them (normalised).
    targets: (n,) class per image; None takes each image's predicted class.
    scorecam_batch: Score-CAM's masked copies of one image per forward pass.

  Returns:
    (n, H, W) float32 maps in [0, 1].

  Raises:
    ValueError: an unknown method, or 'fullgrad' with `fns` lacking its functions.
  """
  if method not in METHODS:
    raise ValueError(f'unknown CAM method {method!r}; expected one of {METHODS}')
  size = images.shape[1:3]
  if targets is None:
    logits = fns.head(variables, fns.features(variables, images))
    targets = jnp.argmax(logits, axis=-1)
  targets = jnp.asarray(targets, jnp.int32)
  if method == 'fullgrad':
    return _fullgrad(fns, variables, images, targets)
  if method == 'eigencam':
    acts = fns.features(variables, images).astype(jnp.float32)
    return _finish(_eigencam(acts), size)
  if method == 'scorecam':
    acts = jax.lax.stop_gradient(fns.features(variables, images)).astype(jnp.float32)
    return _finish(_scorecam(fns, variables, images, targets, acts, scorecam_batch), size)
  acts, grads = _activations_and_grads(fns, variables, images, targets)
  weigh = {
    'gradcam': _gradcam,
    'gradcam++': _gradcam_plus_plus,
    'xgradcam': _xgradcam,
    'layercam': _layercam,
  }[method]
  return _finish(weigh(acts, grads), size)
