"""The model of the feature families: a frozen ImageNet backbone's taps of [0, 1] images.

Its parameters are the backbone's pretrained weights (`uadjax.nn.backbones`): the feature
tasks (`uadjax.train.features`) hand them in as a frozen collection, never train or save them.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from uadjax.nn import backbones


class PretrainedFeatures(nn.Module):
  """{tap: (n, h / s, w / s, c) float32} of (n, h, w, c) images in [0, 1] (gray or RGB).

  Attributes:
    backbone: 'vgg16' | 'alexnet' (`backbones.BACKBONES`).
    layers: the taps, e.g. ('relu3_3', 'relu4_3') (`backbones.TAPS`).
    dtype: compute dtype; parameters stay float32.
  """

  backbone: str = 'vgg16'
  layers: tuple = ('relu3_3', 'relu4_3')
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    del train
    if self.backbone not in backbones.BACKBONES:
      raise ValueError(
        f'model.backbone={self.backbone!r}; expected one of {tuple(backbones.BACKBONES)}.'
      )
    net = backbones.BACKBONES[self.backbone](taps=tuple(self.layers), dtype=self.dtype, name='net')
    return net(backbones.imagenet_inputs(images, self.dtype))

  def pretrained(self) -> dict:
    """The parameters `apply` takes ({'net': ...}): the ImageNet weights of the taps' layers."""
    return {'net': backbones.pretrained_params(self.backbone, tuple(self.layers))}
