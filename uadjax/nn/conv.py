"""Convolution layers of the study's shapes, with parameters laid out exactly as Flax's.

`Conv` computes `nn.Conv(features, (3, 3), strides=2, padding=1)`; `ConvTranspose` computes
`nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)))`, the equivalent of
PyTorch's `ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)` (output = 2 x input).
Each declares `kernel` (3, 3, in, out) and `bias` (out,) with Flax's default initialisers, so
checkpoints are interchangeable with the plain layers and between implementations.

Two implementations compute the same function:

- 'plain': one `lax` convolution. On GPU this is cuDNN, the safe default there.
- 'fast': the same arithmetic written as matrix products, because XLA:CPU differentiates some of
  these shapes pathologically (the gradient of a stride-2 transposed convolution at 4x4..32x32
  took 60-180 ms against 2-6 ms forward; the 2x2 -> 4x4 forward alone took 65 ms). Matrix
  products differentiate into matrix products, which XLA:CPU runs well, and under `jax.vmap`
  over batched kernels they become batched matrix products instead of grouped convolutions.

  * `conv_fast`: im2col. The nine stride-2 shifted views of the padded input are concatenated
    on the channel axis and multiplied by the kernel reshaped to (9 * in, out).
  * `conv_transpose_fast`: sub-pixel (phase) decomposition. Output pixel (2i + p, 2j + q) reads
    only input pixels (i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1), so each of the four output
    phases is one product of those shifted views with the kernel taps that reach it (1, 2, 2 and
    4 taps: 9 in all, no multiplications by zero); a depth-to-space interleave puts the phases in
    place. With very few output channels (the decoder's last layer) those products are too thin
    to run well, so each shifted view is multiplied by its taps for all four phases at once.
    The backward pass is written by hand (`jax.custom_vjp`): both gradients are im2col products
    of the output gradient, as for `conv_fast`.

`impl='auto'` picks 'fast' when JAX's default backend is the CPU and 'plain' elsewhere; the choice
is made at trace time, so a jitted step contains exactly one form.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

_DIMS = ('NHWC', 'HWIO', 'NHWC')
_IMPLS = ('auto', 'plain', 'fast')

# Below this many output channels the four phase products of `conv_transpose_fast` are
# matrix-vector-like and slow on XLA:CPU; four (in, 4 * out) products of the shifted views,
# summed, are faster there (at 32x32, 32 -> 1, batch 30: 1.9 ms against 7-20 ms). A stride-1 2x2
# convolution with 4 * out channels ran 1.0 ms, but under `jax.vmap` over kernels it becomes a
# grouped convolution, 16 ms per fold.
_THIN_OUT = 8


def resolve_impl(impl: str) -> str:
  """Maps 'auto' to 'fast' on CPU and 'plain' elsewhere, unless the environment variable
  UADJAX_CONV_IMPL ('plain' | 'fast') says otherwise (read when a model is traced: how
  benchmarks compare whole models in both forms); checks the name."""
  if impl not in _IMPLS:
    raise ValueError(f'impl must be one of {_IMPLS}, got {impl!r}')
  if impl == 'auto':
    forced = os.environ.get('UADJAX_CONV_IMPL', 'auto')
    if forced not in _IMPLS:
      raise ValueError(f'UADJAX_CONV_IMPL must be one of {_IMPLS}, got {forced!r}')
    if forced != 'auto':
      return forced
    return 'fast' if jax.default_backend() == 'cpu' else 'plain'
  return impl


def _upcast(x, kernel):
  """Half-precision operands to float32 on CPU, where XLA has no fast bf16 matrix products.

  Returns (x, kernel, dtype to cast the result back to). On CPU the bf16 products of the fast
  forms ran 2-5x slower than float32 ones, so they run in float32 and round once at the end (more
  accurate than bf16 products, too). Elsewhere the operands are left alone.
  """
  dtype = jnp.result_type(x, kernel)
  if jnp.finfo(dtype).bits < 32 and jax.default_backend() == 'cpu':
    return x.astype(jnp.float32), kernel.astype(jnp.float32), dtype
  return x, kernel, dtype


def conv_plain(x, kernel):
  """3x3 stride-2 convolution, padding 1, as one `lax` convolution. x NHWC, kernel HWIO."""
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=_DIMS)


def conv_transpose_plain(x, kernel):
  """3x3 stride-2 transposed convolution, padding (1, 2), as one `lax` op (output 2x input)."""
  return jax.lax.conv_transpose(x, kernel, (2, 2), ((1, 2), (1, 2)), dimension_numbers=_DIMS)


def _patches(x):
  """im2col of a 3x3 stride-2 padding-1 window: (n, h, w, c) -> (n, ceil(h/2), ceil(w/2), 9c)."""
  _, h, w, _ = x.shape
  ho, wo = (h + 1) // 2, (w + 1) // 2
  # Top/left padding 1 as in `conv_plain`; bottom/right only as much as the last window reads
  # (none for even sizes, where the plain form's extra row of zeros is never used).
  xp = jnp.pad(x, ((0, 0), (1, 2 * ho - h), (1, 2 * wo - w), (0, 0)))
  views = [
    xp[:, a : a + 2 * ho - 1 : 2, b : b + 2 * wo - 1 : 2, :] for a in range(3) for b in range(3)
  ]
  # Channel order (a, b, c) matches the kernel's row-major (3, 3, in) flattening.
  return jnp.concatenate(views, axis=-1)


def conv_fast(x, kernel):
  """`conv_plain` as im2col and one matrix product; same result, any height and width.

  Differentiated by JAX: the kernel gradient is patches^T @ dy, the input gradient dy @ kernel^T
  scattered back by the transposes of the nine slices; both ran as fast as or faster than the
  hand-written alternative (a transposed convolution for the input gradient).
  """
  x, kernel, out_dtype = _upcast(x, kernel)
  c, f = kernel.shape[2:]
  y = jnp.dot(_patches(x), kernel.reshape(9 * c, f))
  return y.astype(out_dtype)


def _adjoint_kernel(kernel):
  """(3, 3, in, out) -> (3, 3, out, in), flipped: the stride-2 conv a transposed conv undoes.

  `conv_transpose_plain(x, k)` is the adjoint (in x) of `conv_plain(., _adjoint_kernel(k))`.
  """
  return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def _depth_to_space(y, n, h, w):
  """(n, h, w, 2, 2, f) phases (row parity, column parity) -> (n, 2h, 2w, f)."""
  f = y.shape[-1]
  return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, f)


def _conv_transpose_phases(x, kernel):
  """`conv_transpose_plain` as four phase products and a depth-to-space interleave."""
  n, h, w, c = x.shape
  f = kernel.shape[-1]
  k = kernel
  # Output row 2i reads input row i through kernel row 1; row 2i + 1 reads row i through kernel
  # row 0 and row i + 1 through kernel row 2 (zero past the end: the padding (1, 2)). Columns
  # likewise. So x00..x11 below are the only inputs any output pixel of cell (i, j) needs.
  xp = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
  x00, x01 = xp[:, :h, :w], xp[:, :h, 1:]
  x10, x11 = xp[:, 1:, :w], xp[:, 1:, 1:]
  if f < _THIN_OUT:
    zero = jnp.zeros((c, f), k.dtype)
    # Kernel taps from input (i + di, j + dj) to the phases (ee, eo, oe, oo), zero where a
    # phase does not read that input: one (c, 4f) product per shifted view, summed.
    taps = {
      (0, 0): (k[1, 1], k[1, 0], k[0, 1], k[0, 0]),
      (0, 1): (zero, k[1, 2], zero, k[0, 2]),
      (1, 0): (zero, zero, k[2, 1], k[2, 0]),
      (1, 1): (zero, zero, zero, k[2, 2]),
    }
    views = {(0, 0): x00, (0, 1): x01, (1, 0): x10, (1, 1): x11}
    y = sum(jnp.dot(views[d], jnp.concatenate(taps[d], axis=-1)) for d in views)
    y = y.reshape(n, h, w, 2, 2, f)
  else:

    def phase(views, taps):
      return jnp.dot(jnp.concatenate(views, axis=-1), jnp.concatenate(taps, axis=0))

    ee = phase([x00], [k[1, 1]])
    eo = phase([x00, x01], [k[1, 0], k[1, 2]])
    oe = phase([x00, x10], [k[0, 1], k[2, 1]])
    oo = phase([x00, x01, x10, x11], [k[0, 0], k[0, 2], k[2, 0], k[2, 2]])
    y = jnp.stack([ee, eo, oe, oo], axis=-2).reshape(n, h, w, 2, 2, f)
  return _depth_to_space(y, n, h, w)


@jax.custom_vjp
def _conv_transpose_fast(x, kernel):
  """Phase decomposition forward; backward as im2col products (see `_conv_transpose_bwd`)."""
  return _conv_transpose_phases(x, kernel)


def _conv_transpose_fwd(x, kernel):
  return _conv_transpose_phases(x, kernel), (x, kernel)


def _conv_transpose_bwd(res, dy):
  """Both gradients from one im2col of dy, instead of differentiating the phase form.

  y = C^T x with C the stride-2 convolution by k' = `_adjoint_kernel(kernel)`, so dx = C dy,
  an im2col product, and dk' = patches(dy)^T @ x. Differentiating the phase form instead cost
  2-8x more (the concatenations, the interleave and the thin products of the output layer).
  """
  x, kernel = res
  c, f = kernel.shape[2:]
  patches = _patches(dy)
  dx = jnp.dot(patches, _adjoint_kernel(kernel).reshape(9 * f, c))
  dk = jnp.tensordot(patches, x, ((0, 1, 2), (0, 1, 2))).reshape(3, 3, f, c)
  return dx, _adjoint_kernel(dk)


_conv_transpose_fast.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def conv_transpose_fast(x, kernel):
  """`conv_transpose_plain` as phase products forward and im2col products backward."""
  x, kernel, out_dtype = _upcast(x, kernel)
  return _conv_transpose_fast(x, kernel).astype(out_dtype)


class _Conv3x3(nn.Module):
  """A 3x3 stride-2 layer with Flax's parameter layout; subclasses name their two forms."""

  features: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  impl: str = 'auto'

  # (plain form, fast form): functions of (x, kernel).
  forms: ClassVar[tuple[Callable, Callable]]

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
      'kernel', nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features), self.param_dtype
    )
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    plain, fast = self.forms
    fn = fast if resolve_impl(self.impl) == 'fast' else plain
    return fn(x, kernel) + bias


class Conv(_Conv3x3):
  """3x3 stride-2 convolution, padding 1 (halves height and width).

  Attributes:
    features: output channels.
    dtype: compute dtype; parameters stay `param_dtype`.
    param_dtype: parameter dtype (float32).
    impl: 'auto' ('fast' on CPU, 'plain' elsewhere), 'plain' (one `lax` convolution) or 'fast'
      (im2col and a matrix product). Same parameters and outputs either way.
  """

  forms = (staticmethod(conv_plain), staticmethod(conv_fast))


class ConvTranspose(_Conv3x3):
  """3x3 stride-2 transposed convolution that doubles height and width.

  Attributes:
    features: output channels.
    dtype: compute dtype; parameters stay `param_dtype`.
    param_dtype: parameter dtype (float32).
    impl: 'auto' ('fast' on CPU, 'plain' elsewhere), 'plain' (one `lax` transposed
      convolution) or 'fast' (phase decomposition). Same parameters and outputs either way.
  """

  forms = (staticmethod(conv_transpose_plain), staticmethod(conv_transpose_fast))


def _pairs(padding, kernel_size) -> tuple[tuple[int, int], tuple[int, int]]:
  """'SAME' (stride 1, odd kernels), 'VALID', an int or ((top, bottom), (left, right))."""
  if padding == 'VALID':
    return ((0, 0), (0, 0))
  if padding == 'SAME':
    return tuple(((k - 1) // 2, k // 2) for k in kernel_size)
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return tuple(tuple(int(v) for v in p) for p in padding)


def conv_im2col(x, kernel, strides, padding):
  """Any 2-D convolution (NHWC, HWIO, explicit padding) as im2col and one matrix product.

  Why: XLA:CPU runs a `lax` convolution inside a while loop (a `lax.scan` of train steps) about
  20x slower than the same convolution compiled alone; matrix products do not suffer from this.
  A 1x1 stride-1 convolution is a matrix product already.
  """
  x, kernel, out_dtype = _upcast(x, kernel)
  kh, kw, c, f = kernel.shape
  sh, sw = strides
  (pt, pb), (pl, pr) = padding
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  ho, wo = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
  if (kh, kw, sh, sw) == (1, 1, 1, 1):
    return jnp.dot(xp, kernel.reshape(c, f)).astype(out_dtype)
  views = [
    xp[:, a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw, :]
    for a in range(kh)
    for b in range(kw)
  ]
  # Channel order (a, b, c) matches the kernel's row-major (kh, kw, in) flattening.
  return jnp.dot(jnp.concatenate(views, axis=-1), kernel.reshape(kh * kw * c, f)).astype(out_dtype)


class Conv2D(nn.Module):
  """`nn.Conv` for 2-D NHWC images, same parameters ('kernel' HWIO, optional 'bias'), with the
  im2col form on the CPU (`conv_im2col`) and one `lax` convolution elsewhere.

  Attributes:
    features: output channels.
    kernel_size: (kh, kw).
    strides: an int or (sh, sw).
    padding: 'SAME', 'VALID', an int or ((top, bottom), (left, right)).
    use_bias: whether to add a bias.
    kernel_init: the kernel's initialiser (Flax's default: LeCun normal).
    dtype: compute dtype; parameters stay `param_dtype`.
    param_dtype: parameter dtype (float32).
    impl: 'auto' ('fast' on CPU, 'plain' elsewhere), 'plain' or 'fast'.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: Any = 1
  padding: Any = 'SAME'
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  impl: str = 'auto'

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    strides = (self.strides, self.strides) if isinstance(self.strides, int) else self.strides
    kernel = self.param(
      'kernel', self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype
    )
    bias = (
      self.param('bias', nn.initializers.zeros_init(), (self.features,), self.param_dtype)
      if self.use_bias
      else None
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    padding = _pairs(self.padding, (kh, kw))
    if resolve_impl(self.impl) == 'fast':
      y = conv_im2col(x, kernel, tuple(strides), padding)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, tuple(strides), padding, dimension_numbers=_DIMS)
    return y if bias is None else y + bias
