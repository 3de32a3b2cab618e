"""DenseNet: DenseNet121's parameter count, torchvision weight mapping, perturbation points."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from uadjax.families.densenet.model import (
  DenseNet,
  effective_biases,
  load_torchvision_npz,
  torchvision_to_flax,
)

TINY = dict(growth_rate=4, block_config=(2, 1), num_init_features=8, bn_size=2)
# torchvision.models.densenet121(): sum(p.numel() for p in m.parameters()).
TORCHVISION_DENSENET121_PARAMETERS = 7_978_856


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _torchvision_shapes(
  growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4, classes=1000
):
  """Every key of torchvision's `DenseNet(...).state_dict()` with its shape, from the paper's
  architecture as torchvision builds it (not from the Flax module under test)."""
  shapes = {}

  def norm(prefix, c):
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
      shapes[f'{prefix}.{name}'] = (c,)
    shapes[f'{prefix}.num_batches_tracked'] = ()

  shapes['features.conv0.weight'] = (num_init_features, 3, 7, 7)
  norm('features.norm0', num_init_features)
  c = num_init_features
  width = bn_size * growth_rate
  for i, num_layers in enumerate(block_config, start=1):
    for j in range(1, num_layers + 1):
      prefix = f'features.denseblock{i}.denselayer{j}'
      c_in = c + (j - 1) * growth_rate
      norm(f'{prefix}.norm1', c_in)
      shapes[f'{prefix}.conv1.weight'] = (width, c_in, 1, 1)
      norm(f'{prefix}.norm2', width)
      shapes[f'{prefix}.conv2.weight'] = (growth_rate, width, 3, 3)
    c += num_layers * growth_rate
    if i < len(block_config):
      norm(f'features.transition{i}.norm', c)
      shapes[f'features.transition{i}.conv.weight'] = (c // 2, c, 1, 1)
      c //= 2
  norm('features.norm5', c)
  shapes['classifier.weight'] = (classes, c)
  shapes['classifier.bias'] = (classes,)
  return shapes


def _random_state_dict(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return {
    k: np.array(7, np.int64) if k.endswith('num_batches_tracked') else rng.normal(size=s)
    for k, s in shapes.items()
  }


def _variable_shapes(model, size=32):
  return jax.eval_shape(
    lambda k, x: model.init(k, x, train=False), jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))
  )


def _random_variables(model, size=32, seed=1):
  """Variables of the model's structure filled with random numbers, without running `init`
  (jit-compiling DenseNet121's init takes ~20 s on a 2-core CPU)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda s: np.asarray(rng.normal(size=s.shape), np.float32), _variable_shapes(model, size)
  )


def _learnable(shapes):
  return sum(
    int(np.prod(s)) for k, s in shapes.items() if k.endswith('.weight') or k.endswith('.bias')
  )


def test_densenet121_parameter_count_and_shapes_match_torchvision():
  torch_shapes = _torchvision_shapes()
  assert _learnable(torch_shapes) == TORCHVISION_DENSENET121_PARAMETERS
  model = DenseNet()
  shapes = _variable_shapes(model)
  two_class = TORCHVISION_DENSENET121_PARAMETERS - (1024 * 1000 + 1000) + (1024 * 2 + 2)
  assert _count(shapes['params']) == two_class == 6_955_906
  assert _count(shapes['batch_stats']) == sum(
    int(np.prod(s)) for k, s in torch_shapes.items() if k.endswith(('running_mean', 'running_var'))
  )
  x = jnp.zeros((1, 32, 32, 3))
  logits = jax.eval_shape(lambda v: model.apply(v, x, train=False), shapes)
  assert (logits.shape, logits.dtype) == ((1, 2), jnp.float32)
  # 32 -> 16 (conv0) -> 8 (pool) -> 4 -> 2 -> 1 (three transitions), 1024 channels.
  f = jax.eval_shape(lambda v: model.apply(v, x, train=False, method='feature_maps'), shapes)
  assert f.shape == (1, 1, 1, 1024)


def test_torchvision_weights_map_onto_every_feature_leaf():
  model = DenseNet()
  variables = _random_variables(model)
  copy = jax.tree.map(np.copy, variables)
  state_dict = _random_state_dict(_torchvision_shapes())
  mapped = torchvision_to_flax(state_dict, variables)

  names = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias'}
  names |= {'mean': 'running_mean', 'var': 'running_var'}
  count = 0
  for collection in ('params', 'batch_stats'):
    flat = traverse_util.flatten_dict(mapped[collection])
    before = traverse_util.flatten_dict(variables[collection])
    for path, value in flat.items():
      assert value.dtype == jnp.float32
      if path[0] == 'classifier':  # the fresh 2-class head is kept
        np.testing.assert_array_equal(value, before[path])
        continue
      torch = state_dict['.'.join((*path[:-1], names[path[-1]]))]
      expected = torch.transpose(2, 3, 1, 0) if torch.ndim == 4 else torch
      np.testing.assert_allclose(value, expected, rtol=1e-6)
      count += value.size
  assert count == _learnable(_torchvision_shapes()) - (1024 * 1000 + 1000) + _count(
    variables['batch_stats']
  )
  # Two values by hand: OIHW [o, i, h, w] lands at HWIO [h, w, i, o].
  conv0 = state_dict['features.conv0.weight']
  kernel = mapped['params']['features']['conv0']['kernel']
  assert kernel[5, 2, 1, 60] == np.float32(conv0[60, 1, 5, 2])
  conv2 = state_dict['features.denseblock3.denselayer24.conv2.weight']
  kernel = mapped['params']['features']['denseblock3']['denselayer24']['conv2']['kernel']
  assert kernel[0, 2, 100, 31] == np.float32(conv2[31, 100, 0, 2])
  # The variables passed in are left alone.
  jax.tree.map(np.testing.assert_array_equal, variables, copy)


def test_old_torchvision_key_spelling_is_accepted():
  model = DenseNet(**TINY)
  variables = _random_variables(model)
  state_dict = _random_state_dict(_torchvision_shapes(**TINY, classes=2))
  old = {
    k.replace('.norm1.', '.norm.1.')
    .replace('.conv1.', '.conv.1.')
    .replace('.norm2.', '.norm.2.')
    .replace('.conv2.', '.conv.2.'): v
    for k, v in state_dict.items()
  }
  assert 'features.denseblock1.denselayer2.norm.1.running_var' in old
  a = torchvision_to_flax(state_dict, variables)
  b = torchvision_to_flax(old, variables)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_missing_key_wrong_shape_and_extra_key_raise_naming_the_key():
  model = DenseNet(**TINY)
  variables = _random_variables(model)
  state_dict = _random_state_dict(_torchvision_shapes(**TINY))

  missing = dict(state_dict)
  del missing['features.denseblock2.denselayer1.norm2.running_mean']
  with pytest.raises(ValueError, match=r'denseblock2\.denselayer1\.norm2\.running_mean'):
    torchvision_to_flax(missing, variables)

  wrong = dict(state_dict)
  wrong['features.transition1.conv.weight'] = np.zeros((16, 8, 1, 1))  # (in, out) swapped
  with pytest.raises(ValueError, match=r'transition1\.conv\.weight'):
    torchvision_to_flax(wrong, variables)

  # A deeper checkpoint (an extra dense layer) is not silently half-loaded.
  extra = dict(state_dict)
  extra['features.denseblock2.denselayer2.conv1.weight'] = np.zeros((8, 12, 1, 1))
  with pytest.raises(ValueError, match=r'denseblock2\.denselayer2\.conv1\.weight'):
    torchvision_to_flax(extra, variables)


def _conv_oihw(x, w, stride, pad):
  """Cross-correlation as torch.nn.functional.conv2d: x (n, c, h, w), w (o, c, kh, kw)."""
  kh, kw = w.shape[2:]
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  ho = (x.shape[2] - kh) // stride + 1
  wo = (x.shape[3] - kw) // stride + 1
  out = np.zeros((x.shape[0], w.shape[0], ho, wo))
  for i in range(kh):
    for j in range(kw):
      window = x[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
      out += np.einsum('nchw,oc->nohw', window, w[:, :, i, j])
  return out


def test_mapped_convolutions_compute_torchs_convolution():
  model = DenseNet(**TINY)
  variables = _random_variables(model, size=11)
  state_dict = _random_state_dict(_torchvision_shapes(**TINY))
  mapped = torchvision_to_flax(state_dict, variables)
  x = np.random.default_rng(2).normal(size=(2, 11, 11, 3)).astype(np.float32)
  _, state = model.apply(mapped, x, train=False, capture_intermediates=True, mutable=True)
  got = state['intermediates']['features']

  # Stem: 7x7 stride 2 padding 3 on an odd size.
  expected = _conv_oihw(x.transpose(0, 3, 1, 2), state_dict['features.conv0.weight'], 2, 3)
  np.testing.assert_allclose(
    got['conv0']['__call__'][0], expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4
  )
  # A dense layer's 3x3 padding-1 convolution, fed the ReLU of its norm2.
  layer = got['denseblock1']['denselayer2']
  y = np.maximum(np.asarray(layer['norm2']['__call__'][0]), 0)
  w = state_dict['features.denseblock1.denselayer2.conv2.weight']
  expected = _conv_oihw(y.transpose(0, 3, 1, 2), w, 1, 1)
  np.testing.assert_allclose(
    layer['conv2']['__call__'][0], expected.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4
  )


def test_load_torchvision_npz(tmp_path):
  model = DenseNet(**TINY)
  variables = _random_variables(model)
  state_dict = _random_state_dict(_torchvision_shapes(**TINY))
  path = tmp_path / 'densenet.npz'
  np.savez(path, **state_dict)
  loaded = load_torchvision_npz(path, variables)
  jax.tree.map(np.testing.assert_array_equal, loaded, torchvision_to_flax(state_dict, variables))

  npy = tmp_path / 'not_an_archive.npy'
  np.save(npy, np.zeros(3))
  with pytest.raises(ValueError, match='not_an_archive.npy'):
    load_torchvision_npz(npy, variables)
  garbage = tmp_path / 'garbage.npz'
  garbage.write_bytes(b'this is no zip file')
  with pytest.raises(ValueError, match='garbage.npz'):
    load_torchvision_npz(garbage, variables)
  with pytest.raises(FileNotFoundError):
    load_torchvision_npz(tmp_path / 'absent.npz', variables)


def test_head_of_feature_maps_is_the_forward_and_perturbations_are_inert():
  model = DenseNet(**TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  variables = _random_variables(model, size=16)
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])  # var > 0
  logits = model.apply(variables, x, train=False)
  f = model.apply(variables, x, train=False, method='feature_maps')
  assert f.shape == (2, 2, 2, 12) and float(f.min()) >= 0  # after norm5's ReLU
  np.testing.assert_allclose(
    model.apply(variables, f, train=False, method='head'), logits, rtol=1e-6
  )

  _, state = model.apply(variables, x, train=False, mutable=['perturbations'])
  perturbations = state['perturbations']
  biases = model.apply(variables, method='bias_terms')
  # One perturbation per BatchNorm, laid out as the effective biases: 1 + 2 * 3 layers + 1 + 1.
  assert jax.tree.structure(perturbations) == jax.tree.structure(biases)
  assert len(jax.tree.leaves(biases)) == 9
  for p, b in zip(jax.tree.leaves(perturbations), jax.tree.leaves(biases), strict=True):
    assert p.shape[-1] == b.shape[0] and not p.any()
  np.testing.assert_array_equal(
    model.apply({**variables, 'perturbations': perturbations}, x, train=False), logits
  )
  # norm0 in inference mode: scale * (x - mean) / sqrt(var + eps) + bias.
  scale = variables['params']['features']['norm0']['scale']
  bias = variables['params']['features']['norm0']['bias']
  stats = variables['batch_stats']['features']['norm0']
  expected = bias - stats['mean'] * scale / np.sqrt(stats['var'] + 1e-5)
  np.testing.assert_allclose(biases['features']['norm0']['bias'], expected, rtol=1e-5)
  assert effective_biases(variables).keys() == {'features'}


def test_bfloat16_compute_keeps_float32_params_and_logits_and_trains_batch_stats():
  model = DenseNet(**TINY, dropout=0.2, dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 16, 3))
  shapes = _variable_shapes(model, size=16)
  assert 'perturbations' not in shapes
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes['params']))
  variables = _random_variables(model, size=16)
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])
  # Jitted: eager dispatch compiles every bf16 op on its own, several times slower here.
  logits, updates = jax.jit(
    lambda v, k: model.apply(v, x, train=True, rngs={'dropout': k}, mutable=['batch_stats'])
  )(variables, jax.random.PRNGKey(2))
  assert logits.shape == (3, 2) and logits.dtype == jnp.float32
  before = variables['batch_stats']['features']['norm0']['mean']
  assert not np.allclose(updates['batch_stats']['features']['norm0']['mean'], before)
