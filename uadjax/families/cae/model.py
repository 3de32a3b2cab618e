"""The study's convolutional autoencoder (CAE)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from uadjax.nn.conv import ConvTranspose
from uadjax.nn.layers import DecoderBlock, EncoderBlock


class CAE(nn.Module):
  """Convolutional autoencoder: stride-2 encoder blocks, mirrored transposed-conv decoder.

  A 64x64 input is encoded to 2x2x512 with the study's channels and decoded back; the output is
  linear (no final activation), float32.

  Attributes:
    features: encoder channels, coarsest last; the decoder mirrors them.
    dropout: dropout rate of every block.
    out_channels: channels of the reconstruction (the input's).
    dtype: compute dtype (bfloat16 for mixed precision); parameters stay float32.
  """

  features: Sequence[int] = (32, 64, 128, 256, 512)
  dropout: float = 0.25
  out_channels: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    """Returns {'reconstruction': float32 array of the input's shape}."""
    x = jnp.asarray(x, self.dtype)
    for i, f in enumerate(self.features):
      x = EncoderBlock(
        f, use_norm=i > 0, dropout=self.dropout, dtype=self.dtype, name=f'encoder_{i}'
      )(x, train=train)
    n = len(self.features)
    for j, i in enumerate(range(n - 1, 0, -1)):
      x = DecoderBlock(
        self.features[i - 1],
        use_norm=i > 1,
        dropout=self.dropout,
        dtype=self.dtype,
        name=f'decoder_{j}',
      )(x, train=train)
    x = ConvTranspose(self.out_channels, dtype=self.dtype, name='output')(x)
    return {'reconstruction': x.astype(jnp.float32)}
