"""Building blocks shared by the study's convolutional models."""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from uadjax.nn.conv import Conv, ConvTranspose


class _Block(nn.Module):
  """3x3 stride-2 (transposed) convolution -> BatchNorm -> LeakyReLU(0.2) -> Dropout."""

  features: int
  use_norm: bool = True
  dropout: float = 0.25
  dtype: Any = jnp.float32

  conv: ClassVar[type[nn.Module]]

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = self.conv(self.features, dtype=self.dtype, name='conv')(x)
    if self.use_norm:
      # PyTorch's BatchNorm2d defaults: momentum 0.1 (Flax: 0.9), eps 1e-5.
      x = nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name='norm'
      )(x)
    x = nn.leaky_relu(x, 0.2)
    return nn.Dropout(self.dropout, deterministic=not train)(x)


class EncoderBlock(_Block):
  """Conv 3x3 stride 2 (halves the size) -> BatchNorm -> LeakyReLU(0.2) -> Dropout.

  Attributes:
    features: output channels.
    use_norm: False on the first block, as in the study.
    dropout: dropout rate.
    dtype: compute dtype; parameters stay float32.
  """

  conv = Conv


class DecoderBlock(_Block):
  """ConvTranspose 3x3 stride 2 (doubles the size) -> BatchNorm -> LeakyReLU(0.2) -> Dropout.

  Attributes:
    features: output channels.
    use_norm: False on the last block, mirroring the encoder's first.
    dropout: dropout rate.
    dtype: compute dtype; parameters stay float32.
  """

  conv = ConvTranspose
