"""Building blocks shared by the study's convolutional models."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from uadjax.models.conv import Conv, ConvTranspose


class EncoderBlock(nn.Module):
  """Conv 3x3 stride 2 -> BatchNorm -> LeakyReLU(0.2) -> Dropout.

  Attributes:
    features: output channels.
    use_norm: False on the first block, as in the study.
    dropout: dropout rate.
    dtype: compute dtype; parameters stay float32.
  """

  features: int
  use_norm: bool = True
  dropout: float = 0.25
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = Conv(self.features, dtype=self.dtype, name='conv')(x)
    if self.use_norm:
      # PyTorch's BatchNorm2d defaults: momentum 0.1 (Flax: 0.9), eps 1e-5.
      x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name='norm'
      )(x)
    x = nn.leaky_relu(x, 0.2)
    return nn.Dropout(self.dropout, deterministic=not train)(x)


class DecoderBlock(nn.Module):
  """ConvTranspose 3x3 stride 2 (doubles the size) -> BatchNorm -> LeakyReLU(0.2) -> Dropout.

  Attributes:
    features: output channels.
    use_norm: False on the last block, mirroring the encoder's first.
    dropout: dropout rate.
    dtype: compute dtype; parameters stay float32.
  """

  features: int
  use_norm: bool = True
  dropout: float = 0.25
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = ConvTranspose(self.features, dtype=self.dtype, name='conv')(x)
    if self.use_norm:
      x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name='norm'
      )(x)
    x = nn.leaky_relu(x, 0.2)
    return nn.Dropout(self.dropout, deterministic=not train)(x)
