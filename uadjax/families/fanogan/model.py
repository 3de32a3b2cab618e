"""f-AnoGAN's networks: a WGAN-GP generator and critic, and the encoder built on the critic's trunk.

Attributes of this module:
  Generator: z -> image in [-1, 1] (tanh), 'resnet' or 'dcgan'.
  Critic: image -> (score, features); no BatchNorm (the gradient penalty is per sample).
  Encoder: image -> z; the critic's trunk (own parameters) + Linear + tanh.
  FAnoGAN: the three under the names 'generator', 'critic' and 'encoder', so one parameter tree
    (and one checkpoint) holds the whole model; both training phases use it.
  ARCHITECTURES: the names `arch` takes.

Architectures:
  'resnet': the original f-AnoGAN 64x64 networks (Gulrajani et al.'s ResNet WGAN-GP). Generator:
    Linear latent -> 4x4x8d, up-blocks (BatchNorm, ReLU, nearest x2, conv 3x3, twice, plus a
    1x1 shortcut) to the image size, BatchNorm, ReLU, conv 3x3, tanh. Critic: conv 3x3, down-blocks
    (LayerNorm, ReLU, conv 3x3, twice, mean-pool, plus a 1x1 shortcut) to 4x4, Linear -> 1.
    Larger images add blocks at the top; widths stay at most 8d in both (d ... 8d, 8d, ...).
  Their convolutions are `uadjax.nn.conv.Conv2D` (nn.Conv's parameters; im2col on a CPU,
  where XLA runs `lax` convolutions inside the training loop's `lax.scan` ~20x slower).
  'dcgan': a lighter pair. Generator: Linear -> 4x4 features, stride-2 transposed convolutions
    3x3 with BatchNorm + ReLU, tanh. Critic: stride-2 convolutions 3x3 with LeakyReLU(0.2).
    Widths double at every stage in both (d, 2d, ... 32d at 256x256: d is small here). The
    3x3 stride-2 layers are the CAE's (uadjax.nn.conv): on a CPU they run as matrix
    products, which XLA:CPU differentiates well, also twice (the gradient penalty). With
    `nn.Conv` / `nn.ConvTranspose` 4x4 a critic step at 64x64, d = 32, batch 30 took 4.2 s on a
    2-core CPU.
  In both, the critic's features f(x) (izi_f's feature residual) are its flattened 4x4 trunk
  output, the layer before the final Linear.

The models take and give images in [-1, 1]; the tasks (uadjax.families.fanogan.task) map the data's
[0, 1] there.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from uadjax.nn import conv

ARCHITECTURES = ('resnet', 'dcgan')


def _n_doublings(image_size: int) -> int:
  """Number of x2 steps between the 4x4 base and `image_size` (a power of two >= 8)."""
  n = int(round(math.log2(image_size / 4)))
  if n < 1 or 4 * 2**n != image_size:
    raise ValueError(f'model.image_size={image_size}: expected a power of two >= 8.')
  return n


def _batch_norm(train: bool, dtype, name=None):
  # PyTorch's BatchNorm2d defaults (momentum 0.1 = Flax 0.9, eps 1e-5), as the other models.
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
  )


def _upsample(x):
  n, h, w, c = x.shape
  return jax.image.resize(x, (n, 2 * h, 2 * w, c), 'nearest')


def _mean_pool(x):
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


class UpBlock(nn.Module):
  """The ResNet generator's block: BN, ReLU, x2, conv 3x3, BN, ReLU, conv 3x3; 1x1 shortcut.

  Attributes:
    features: output channels.
    dtype: compute dtype.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    shortcut = conv.Conv2D(self.features, (1, 1), dtype=self.dtype, name='shortcut')(_upsample(x))
    y = nn.relu(_batch_norm(train, self.dtype, 'norm_0')(x))
    y = conv.Conv2D(self.features, (3, 3), dtype=self.dtype, name='conv_0')(_upsample(y))
    y = nn.relu(_batch_norm(train, self.dtype, 'norm_1')(y))
    y = conv.Conv2D(self.features, (3, 3), dtype=self.dtype, name='conv_1')(y)
    return shortcut + y


class DownBlock(nn.Module):
  """The ResNet critic's block: LN, ReLU, conv 3x3, LN, ReLU, conv 3x3, mean-pool; shortcut 1x1
  then mean-pool. LayerNorm normalises each sample on its own, so the gradient penalty of one
  sample does not depend on the others.

  Attributes:
    features: output channels.
    dtype: compute dtype.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    shortcut = _mean_pool(conv.Conv2D(self.features, (1, 1), dtype=self.dtype, name='shortcut')(x))
    ln = lambda name: nn.LayerNorm(reduction_axes=(-3, -2, -1), dtype=self.dtype, name=name)
    y = nn.relu(ln('norm_0')(x))
    y = conv.Conv2D(x.shape[-1], (3, 3), dtype=self.dtype, name='conv_0')(y)
    y = nn.relu(ln('norm_1')(y))
    y = _mean_pool(conv.Conv2D(self.features, (3, 3), dtype=self.dtype, name='conv_1')(y))
    return shortcut + y


class Generator(nn.Module):
  """z (n, latent) -> images (n, size, size, out_channels) in [-1, 1], float32.

  Attributes:
    arch: 'resnet' | 'dcgan'.
    dim: base width d (the 4x4 features have 8d channels at 64x64).
    image_size: output side (power of two).
    out_channels: image channels.
    dtype: compute dtype.
  """

  arch: str = 'resnet'
  dim: int = 64
  image_size: int = 64
  out_channels: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, *, train: bool):
    n = _n_doublings(self.image_size)
    width = [self.dim * 2 ** (n - 1 - k) for k in range(n)]  # 8d, 4d, 2d, d at 64x64
    if self.arch == 'resnet':
      # Mirrors its critic, whose widths stop at 8d: at 256x256 8d, 8d, 8d, 4d, 2d, d (without
      # the cap 32d, 16d, ...: 124 M parameters at d = 64 against the critic's 17 M).
      width = [min(w, 8 * self.dim) for w in width]
    x = nn.Dense(4 * 4 * width[0], dtype=self.dtype, name='input')(jnp.asarray(z, self.dtype))
    x = x.reshape(z.shape[0], 4, 4, width[0])
    if self.arch == 'resnet':
      for k in range(n):
        x = UpBlock(width[k], dtype=self.dtype, name=f'block_{k}')(x, train=train)
      x = nn.relu(_batch_norm(train, self.dtype, 'norm')(x))
      x = conv.Conv2D(self.out_channels, (3, 3), dtype=self.dtype, name='output')(x)
    elif self.arch == 'dcgan':
      x = nn.relu(_batch_norm(train, self.dtype, 'norm')(x))
      for k in range(1, n):
        x = conv.ConvTranspose(width[k], dtype=self.dtype, name=f'block_{k}')(x)
        x = nn.relu(_batch_norm(train, self.dtype, f'norm_{k}')(x))
      x = conv.ConvTranspose(self.out_channels, dtype=self.dtype, name='output')(x)
    else:
      raise ValueError(f'model.arch={self.arch!r}; expected one of {ARCHITECTURES}.')
    return jnp.tanh(x.astype(jnp.float32))


class Trunk(nn.Module):
  """The critic's convolutional trunk: image -> flattened 4x4 features (n, 16 * channels).

  Attributes:
    arch: 'resnet' | 'dcgan'.
    dim: base width d.
    dtype: compute dtype.
  """

  arch: str = 'resnet'
  dim: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, self.dtype)
    n = _n_doublings(x.shape[1])
    if self.arch == 'resnet':
      x = conv.Conv2D(self.dim, (3, 3), dtype=self.dtype, name='input')(x)
      for k in range(n):
        width = self.dim * 2 ** min(k + 1, 3)  # 2d, 4d, 8d, 8d at 64x64
        x = DownBlock(width, dtype=self.dtype, name=f'block_{k}')(x)
    elif self.arch == 'dcgan':
      for k in range(n):
        x = conv.Conv(self.dim * 2**k, dtype=self.dtype, name=f'block_{k}')(x)
        x = nn.leaky_relu(x, 0.2)
    else:
      raise ValueError(f'model.arch={self.arch!r}; expected one of {ARCHITECTURES}.')
    return x.reshape(x.shape[0], -1)


class Critic(nn.Module):
  """images in [-1, 1] -> (scores (n,), features (n, k)), float32.

  Attributes:
    arch, dim, dtype: as `Trunk`.
  """

  arch: str = 'resnet'
  dim: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    features = Trunk(self.arch, self.dim, self.dtype, name='trunk')(x)
    score = nn.Dense(1, dtype=self.dtype, name='output')(features)
    return score[:, 0].astype(jnp.float32), features.astype(jnp.float32)


class Encoder(nn.Module):
  """images in [-1, 1] -> z (n, latent) in (-1, 1): the critic's trunk + Linear + tanh.

  Attributes:
    arch, dim, dtype: as `Trunk`.
    latent_dim: size of z.
  """

  arch: str = 'resnet'
  dim: int = 64
  latent_dim: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    features = Trunk(self.arch, self.dim, self.dtype, name='trunk')(x)
    z = nn.Dense(self.latent_dim, dtype=self.dtype, name='output')(features)
    return jnp.tanh(z.astype(jnp.float32))


class FAnoGAN(nn.Module):
  """Generator, critic and encoder in one parameter tree ('generator', 'critic', 'encoder').

  Call a part with `model.apply(variables, x, method='generate' | 'discriminate' | 'encode')`;
  `__call__` (izi: x -> G(E(x)) and its critic output) exists to initialise all three.

  Attributes:
    arch: 'resnet' (the original f-AnoGAN networks) | 'dcgan' (lighter).
    latent_dim: size of z (study: 128).
    dim: base width d (original: 64).
    image_size: side of the generated images (the data's `image_size`).
    out_channels: image channels.
    dtype: compute dtype; parameters stay float32.
  """

  arch: str = 'resnet'
  latent_dim: int = 128
  dim: int = 64
  image_size: int = 64
  out_channels: int = 1
  dtype: Any = jnp.float32

  def setup(self):
    if self.arch not in ARCHITECTURES:
      raise ValueError(f'model.arch={self.arch!r}; expected one of {ARCHITECTURES}.')
    self.generator = Generator(
      self.arch, self.dim, self.image_size, self.out_channels, dtype=self.dtype
    )
    self.critic = Critic(self.arch, self.dim, dtype=self.dtype)
    self.encoder = Encoder(self.arch, self.dim, self.latent_dim, dtype=self.dtype)

  def generate(self, z, *, train: bool = False):
    """G(z): images in [-1, 1], float32."""
    return self.generator(z, train=train)

  def discriminate(self, x):
    """D(x): (scores (n,), features (n, k)), float32."""
    return self.critic(x)

  def encode(self, x):
    """E(x): latent codes (n, latent_dim) in (-1, 1), float32."""
    return self.encoder(x)

  def __call__(self, x, *, train: bool = False):
    """{'z': E(x), 'reconstruction': G(E(x)), 'score': D(G(E(x)))}; touches every part."""
    z = self.encode(x)
    reconstruction = self.generate(z, train=train)
    score, _ = self.discriminate(reconstruction)
    return {'z': z, 'reconstruction': reconstruction, 'score': score}
