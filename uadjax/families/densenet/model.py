"""DenseNet (torchvision's DenseNet121 by default), the study's supervised fundus quality model.

The study fine-tunes an ImageNet-pretrained DenseNet121 with a fresh fully connected head for
the two classes (good / poor quality). Parameters are named as torchvision names them
(`features/denseblock1/denselayer1/norm1`, `features/transition1/conv`, `features/norm5`,
`classifier`), so `torchvision_to_flax` is a renaming and a transpose.

The ImageNet weights come from torchvision, converted once on the user's side to an `.npz` of
its state dict (this package does not depend on torch):

  import torch, torchvision, numpy as np
  m = torchvision.models.densenet121(weights='IMAGENET1K_V1')
  np.savez('densenet121_imagenet.npz', **{k: v.numpy() for k, v in m.state_dict().items()})

and loaded with `load_torchvision_npz('densenet121_imagenet.npz', variables)`.

Class-activation maps (`uadjax.evaluation.cam`) see the model through three methods, all pure
under `model.apply`:

  feature_maps(x, *, train): the last feature block (norm5 + ReLU), (n, h, w, c).
  head(f, *, train): logits from those feature maps (global average pool + classifier).
  bias_terms(): the effective bias of every BatchNorm, for FullGrad.

`__call__` is `head(feature_maps(x))`. Every BatchNorm output passes through `self.perturb`
(collection 'perturbations', variable 'bias' in the BatchNorm's own scope): a no-op unless the
caller passes that collection, and then the gradient with respect to it is the gradient with
respect to that layer's bias, at every pixel, without hooks or mutable state.

Attributes:
  DenseNet: the network (`Features` + global average pool + `classifier`).
  Features, DenseBlock, DenseLayer, Transition: its parts, as torchvision's.
  BatchNorm: `nn.BatchNorm` with a perturbation point at its output.
  effective_biases: bias - mean * scale / sqrt(var + eps) of every BatchNorm (FullGrad's biases).
  torchvision_to_flax: a torchvision DenseNet state dict (numpy) onto Flax variables.
  load_torchvision_npz: the same, from an `.npz` file of that state dict.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from uadjax.nn import conv

# torchvision's initialisation: kaiming_normal_ (fan_in, gain sqrt(2), untruncated) for convs;
# nn.Linear's default kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and
# a zero bias for the classifier.
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
_linear_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')

# PyTorch's BatchNorm2d defaults: momentum 0.1 (Flax: 0.9), eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class BatchNorm(nn.BatchNorm):
  """`nn.BatchNorm` whose output is a perturbation point ('perturbations'/'bias').

  Adding a zero 'bias' perturbation to the output leaves the value alone; its gradient is the
  gradient with respect to the layer's bias at each pixel, which FullGrad multiplies by the
  effective bias (`DenseNet.bias_terms`). Without a 'perturbations' collection it is a no-op, and
  `init` does not create one.
  """

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    """BatchNorm of x, then the (usually absent) perturbation."""
    y = super().__call__(x, use_running_average, mask=mask)
    if self.is_initializing():
      # `init` would otherwise return zero perturbations shaped like its example batch, and
      # applying those variables to another batch size would fail to broadcast.
      return y
    return self.perturb('bias', y)


def _norm(name: str, train: bool, dtype: Any) -> BatchNorm:
  return BatchNorm(
    use_running_average=not train,
    momentum=BN_MOMENTUM,
    epsilon=BN_EPSILON,
    dtype=dtype,
    name=name,
  )


class DenseLayer(nn.Module):
  """BN -> ReLU -> Conv 1x1 (bn_size * growth) -> BN -> ReLU -> Conv 3x3 (growth) -> Dropout,
  its output concatenated to its input.

  Attributes:
    growth_rate: channels the layer adds.
    bn_size: bottleneck width, in multiples of growth_rate.
    dropout: dropout rate on the new channels (torchvision's drop_rate).
    dtype: compute dtype; parameters stay float32.
  """

  growth_rate: int
  bn_size: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.relu(_norm('norm1', train, self.dtype)(x))
    y = conv.Conv2D(
      self.bn_size * self.growth_rate,
      (1, 1),
      use_bias=False,
      kernel_init=_conv_init,
      dtype=self.dtype,
      name='conv1',
    )(y)
    y = nn.relu(_norm('norm2', train, self.dtype)(y))
    y = conv.Conv2D(
      self.growth_rate,
      (3, 3),
      padding=1,
      use_bias=False,
      kernel_init=_conv_init,
      dtype=self.dtype,
      name='conv2',
    )(y)
    if self.dropout > 0:
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
  """BN -> ReLU -> Conv 1x1 (features) -> average pool 2x2 stride 2.

  Attributes:
    features: output channels (half the input's in DenseNet121).
    dtype: compute dtype; parameters stay float32.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.relu(_norm('norm', train, self.dtype)(x))
    x = conv.Conv2D(
      self.features, (1, 1), use_bias=False, kernel_init=_conv_init, dtype=self.dtype, name='conv'
    )(x)
    # VALID pooling floors odd sizes, as torch's AvgPool2d(2, 2) does.
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseBlock(nn.Module):
  """`num_layers` dense layers, each seeing the concatenation of all the earlier outputs.

  Attributes:
    num_layers: dense layers in the block.
    growth_rate: channels each layer adds.
    bn_size: bottleneck width, in multiples of growth_rate.
    dropout: dropout rate on each layer's new channels.
    dtype: compute dtype; parameters stay float32.
  """

  num_layers: int
  growth_rate: int
  bn_size: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    for j in range(1, self.num_layers + 1):
      x = DenseLayer(
        self.growth_rate, self.bn_size, self.dropout, dtype=self.dtype, name=f'denselayer{j}'
      )(x, train=train)
    return x


class Features(nn.Module):
  """torchvision's `DenseNet.features` followed by the ReLU of its forward: (n, h, w, c) maps.

  Attributes:
    growth_rate: channels each dense layer adds.
    block_config: dense layers per block.
    num_init_features: channels of the stem convolution.
    bn_size: bottleneck width of the dense layers, in multiples of growth_rate.
    dropout: dropout rate inside the dense layers.
    dtype: compute dtype; parameters stay float32.
  """

  growth_rate: int = 32
  block_config: Sequence[int] = (6, 12, 24, 16)
  num_init_features: int = 64
  bn_size: int = 4
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = conv.Conv2D(
      self.num_init_features,
      (7, 7),
      strides=2,
      padding=3,
      use_bias=False,
      kernel_init=_conv_init,
      dtype=self.dtype,
      name='conv0',
    )(x)
    x = nn.relu(_norm('norm0', train, self.dtype)(x))
    # Flax pads max pooling with -inf, as torch's MaxPool2d does.
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    channels = self.num_init_features
    for i, num_layers in enumerate(self.block_config, start=1):
      x = DenseBlock(
        num_layers,
        self.growth_rate,
        self.bn_size,
        self.dropout,
        dtype=self.dtype,
        name=f'denseblock{i}',
      )(x, train=train)
      channels += num_layers * self.growth_rate
      if i < len(self.block_config):
        channels //= 2
        x = Transition(channels, dtype=self.dtype, name=f'transition{i}')(x, train=train)
    # torchvision's forward applies this ReLU after `features` (whose last module is norm5).
    return nn.relu(_norm('norm5', train, self.dtype)(x))


class DenseNet(nn.Module):
  """DenseNet with a linear head; the defaults are torchvision's DenseNet121 with 2 classes.

  Images are NHWC (ImageNet-normalised RGB for the pretrained weights); logits are float32.

  Attributes:
    growth_rate: channels each dense layer adds (32).
    block_config: dense layers per block ((6, 12, 24, 16) for DenseNet121).
    num_init_features: channels of the stem convolution (64).
    bn_size: bottleneck width of the dense layers, in multiples of growth_rate (4).
    num_classes: outputs of the head (2: good / poor quality).
    dropout: dropout rate on each dense layer's new channels (torchvision's drop_rate, 0).
    dtype: compute dtype (bfloat16 for mixed precision); parameters stay float32.
  """

  growth_rate: int = 32
  block_config: Sequence[int] = (6, 12, 24, 16)
  num_init_features: int = 64
  bn_size: int = 4
  num_classes: int = 2
  dropout: float = 0.0
  dtype: Any = jnp.float32

  def setup(self):
    self.features = Features(
      growth_rate=self.growth_rate,
      block_config=tuple(self.block_config),
      num_init_features=self.num_init_features,
      bn_size=self.bn_size,
      dropout=self.dropout,
      dtype=self.dtype,
    )
    self.classifier = nn.Dense(
      self.num_classes,
      kernel_init=_linear_init,
      bias_init=nn.initializers.zeros_init(),
      dtype=self.dtype,
    )

  def __call__(self, x, *, train: bool):
    """Logits (n, num_classes), float32."""
    return self.head(self.feature_maps(x, train=train), train=train)

  def feature_maps(self, x, *, train: bool):
    """The last feature block after norm5 and ReLU, (n, h, w, c) in the compute dtype.

    This is the activation class-activation maps read (pytorch-grad-cam's `model.features[-1]`
    with torchvision's in-place ReLU applied); `head` maps it to the logits.
    """
    return self.features(jnp.asarray(x, self.dtype), train=train)

  def head(self, f, *, train: bool):
    """Logits (n, num_classes), float32, from `feature_maps`: global average pool + classifier.

    `train` is unused (the head has no dropout or normalisation); it is keyword-only for a
    uniform signature.
    """
    del train
    # Averaged in float32 (free at this size); the classifier then computes in `dtype`.
    pooled = jnp.mean(jnp.asarray(f, jnp.float32), axis=(1, 2))
    return self.classifier(pooled).astype(jnp.float32)

  def bias_terms(self):
    """The effective bias of every BatchNorm, shaped like the 'perturbations' collection.

    In inference mode BatchNorm is y = s * x + b with s = scale / sqrt(var + eps) and
    b = bias - mean * s; FullGrad's bias-gradient map of that layer is b * dlogit/dy. Returns
    {'features': {..., 'norm0': {'bias': (c,)}, ...}}, float32 (the convolutions have no bias).
    """
    return effective_biases(self.variables, BN_EPSILON)


def effective_biases(variables: Mapping, epsilon: float = BN_EPSILON) -> dict:
  """bias - mean * scale / sqrt(var + epsilon) of every BatchNorm in `variables`.

  A BatchNorm is any scope with params {'scale', 'bias'} and batch_stats {'mean', 'var'}; the
  result nests {'bias': array} at each such scope, the layout of the 'perturbations' collection.
  """
  params = traverse_util.flatten_dict(dict(variables['params']))
  stats = traverse_util.flatten_dict(dict(variables['batch_stats']))
  out = {}
  for path, scale in params.items():
    if path[-1] != 'scale':
      continue
    scope = path[:-1]
    bias = params[(*scope, 'bias')]
    mean, var = stats[(*scope, 'mean')], stats[(*scope, 'var')]
    # float32 whatever the storage: var + eps is small for dead channels, and its rsqrt large.
    s = jnp.asarray(scale, jnp.float32) * jax.lax.rsqrt(jnp.asarray(var, jnp.float32) + epsilon)
    out[(*scope, 'bias')] = jnp.asarray(bias, jnp.float32) - jnp.asarray(mean, jnp.float32) * s
  return traverse_util.unflatten_dict(out)


# ----------------------------------------------------------------------------------------------
# torchvision weights.

# Flax leaf name -> torchvision parameter name, per collection.
_TORCH_NAMES = {
  'params': {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'},
  'batch_stats': {'mean': 'running_mean', 'var': 'running_var'},
}

# torchvision < 0.3 spelled `norm1` / `conv1` of a dense layer as `norm.1` / `conv.1`
# (torchvision's own loader rewrites them with a similar pattern).
_OLD_SPELLING = re.compile(r'(denselayer\d+\.(?:norm|conv|relu))\.([12])\.')


def _torch_key(collection: str, path: tuple[str, ...]) -> str:
  """('features', 'denseblock1', 'denselayer1', 'norm1', 'scale') -> 'features....norm1.weight'."""
  return '.'.join((*path[:-1], _TORCH_NAMES[collection][path[-1]]))


def _to_flax(value: np.ndarray) -> np.ndarray:
  """torch layout -> Flax layout: conv OIHW -> HWIO; vectors unchanged."""
  if value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  return value


def torchvision_to_flax(state_dict: Mapping[str, np.ndarray], variables: Mapping) -> dict:
  """torchvision DenseNet weights (`model.state_dict()` as numpy) onto `DenseNet` variables.

  Only `features.*` is mapped: the convolutions (OIHW -> HWIO), BatchNorm weight/bias (-> scale,
  bias) and running_mean/running_var (-> batch_stats mean, var). The classifier is NOT taken:
  ImageNet's has 1000 outputs and the study trains a fresh head for its 2 classes, so
  `variables['params']['classifier']` is returned as given. `num_batches_tracked` and
  `classifier.*` are ignored; dense-layer keys may use the old `norm.1` / `conv.1` spelling.

  Args:
    state_dict: torchvision key -> array (torch layout), e.g. from `np.load` of an `.npz`.
    variables: {'params', 'batch_stats'} of a `DenseNet` of the same architecture (from
      `model.init`); not modified.

  Returns:
    New variables with every `features` leaf replaced, float32.

  Raises:
    ValueError: naming the key, when a key the model needs is missing, an array has the wrong
      shape, or `features.*` holds a key the model does not have (another DenseNet depth).
  """
  weights = {_OLD_SPELLING.sub(r'\1\2.', k): np.asarray(v) for k, v in state_dict.items()}
  out = {k: dict(v) for k, v in variables.items()}
  used = set()
  for collection in ('params', 'batch_stats'):
    flat = traverse_util.flatten_dict(dict(variables[collection]))
    for path, leaf in flat.items():
      if path[0] != 'features':
        continue
      key = _torch_key(collection, path)
      if key not in weights:
        raise ValueError(f'torchvision state dict has no {key!r} (for Flax {"/".join(path)})')
      value = _to_flax(weights[key])
      if value.shape != tuple(leaf.shape):
        raise ValueError(
          f'{key!r} has shape {weights[key].shape}; the model needs '
          f'{_torch_shape(tuple(leaf.shape))} (Flax {"/".join(path)} {tuple(leaf.shape)})'
        )
      flat[path] = jnp.asarray(value, jnp.float32)
      used.add(key)
    out[collection] = traverse_util.unflatten_dict(flat)
  extra = sorted(
    k
    for k in weights
    if k.startswith('features.') and k not in used and not k.endswith('num_batches_tracked')
  )
  if extra:
    raise ValueError(f'torchvision state dict has keys the model lacks: {extra[:5]}')
  return out


def _torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
  """Flax shape -> the torch shape it comes from (HWIO -> OIHW)."""
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return shape


def load_torchvision_npz(path, variables: Mapping) -> dict:
  """`torchvision_to_flax` of the state dict saved in an `.npz` (see the module docstring).

  Raises:
    FileNotFoundError: the file does not exist.
    ValueError: the file is not a readable `.npz` (naming it), or as `torchvision_to_flax`.
  """
  try:
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
      raise ValueError('not an .npz archive (np.savez writes one)')
    with archive:
      state_dict = {k: archive[k] for k in archive.files}
  except FileNotFoundError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    # A .npy, a pickle (torch.save's format), or a truncated archive.
    raise ValueError(f'cannot read a torchvision state dict from {str(path)!r}: {e}') from e
  return torchvision_to_flax(state_dict, variables)
