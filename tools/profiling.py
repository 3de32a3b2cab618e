"""Per-layer timings of the CAE's ten convolutions, one row per layer and implementation.

  from tools import profiling   # from the repository root
  print(profiling.format_table(profiling.layer_table()))

Forward is the layer's output; backward is the gradient of <output, cotangent> with respect to
input and kernel. The cotangent is random rather than ones: with a plain sum XLA can simplify the
backward pass (a ones cotangent makes the kernel gradient a sum of the input), which flatters
some forms and not others. Every function is jitted, run twice to warm up, then timed `repeats`
times with `block_until_ready`; the median is reported. GFLOP/s counts the dense convolution's
multiply-adds (2 * 9 * in * out per input pixel of a transposed convolution, per output pixel of
a convolution; backward twice that), whatever the form actually executes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from uadjax.nn.conv import Conv, ConvTranspose

# (name in the CAE, module class, input height = width, in channels, out channels), at the
# default features (32, 64, 128, 256, 512) and a 64x64x1 image.
CAE_LAYERS = (
  ('encoder_0', Conv, 64, 1, 32),
  ('encoder_1', Conv, 32, 32, 64),
  ('encoder_2', Conv, 16, 64, 128),
  ('encoder_3', Conv, 8, 128, 256),
  ('encoder_4', Conv, 4, 256, 512),
  ('decoder_0', ConvTranspose, 2, 512, 256),
  ('decoder_1', ConvTranspose, 4, 256, 128),
  ('decoder_2', ConvTranspose, 8, 128, 64),
  ('decoder_3', ConvTranspose, 16, 64, 32),
  ('output', ConvTranspose, 32, 32, 1),
)


def _median_ms(fn, args, repeats: int) -> float:
  """Median wall time of `fn(*args)` in ms, after two warm-up calls (compile, first run)."""
  for _ in range(2):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times)) * 1e3


def time_layer(
  cls,
  size: int,
  in_features: int,
  out_features: int,
  *,
  impl: str,
  dtype: Any = jnp.float32,
  batch: int = 30,
  repeats: int = 20,
) -> dict:
  """Forward and backward median ms of one layer; returns a row without the layer's name."""
  module = cls(out_features, dtype=dtype, impl=impl)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, size, size, in_features)), dtype)
  # Parameters from numpy: the values do not matter, and jitted initialisers compile slowly.
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)['params']
  params = jax.tree.map(lambda s: jnp.asarray(0.05 * rng.normal(size=s.shape), s.dtype), shapes)
  out_shape = jax.eval_shape(lambda p, x: module.apply({'params': p}, x), params, x).shape
  cotangent = jnp.asarray(rng.normal(size=out_shape), jnp.float32)

  def forward(params, x):
    return module.apply({'params': params}, x)

  def loss(params, x):
    return jnp.sum(forward(params, x).astype(jnp.float32) * cotangent)

  def backward(params, x):
    grads, dx = jax.grad(loss, argnums=(0, 1))(params, x)
    return grads['kernel'], dx

  forward_ms = _median_ms(jax.jit(forward), (params, x), repeats)
  backward_ms = _median_ms(jax.jit(backward), (params, x), repeats)
  pixels = batch * (size * size if cls is ConvTranspose else out_shape[1] * out_shape[2])
  flops = 2 * 9 * in_features * out_features * pixels
  return {
    'kind': cls.__name__,
    'input': (size, size, in_features),
    'output': tuple(out_shape[1:]),
    'impl': impl,
    'dtype': jnp.dtype(dtype).name,
    'forward_ms': forward_ms,
    'backward_ms': backward_ms,
    'forward_gflops': flops / forward_ms / 1e6,
    'backward_gflops': 2 * flops / backward_ms / 1e6,
  }


def layer_table(
  dtype: Any = jnp.float32,
  impls: Sequence[str] = ('plain', 'fast'),
  batch: int = 30,
  repeats: int = 20,
) -> list[dict]:
  """Times each of the CAE's ten convolutions under each implementation.

  Args:
    dtype: compute dtype (parameters stay float32, as in the model).
    impls: names accepted by `Conv` / `ConvTranspose` ('plain', 'fast', 'auto').
    batch: images per call (the study trains at 30).
    repeats: timed calls per measurement; the median is reported.

  Returns:
    One dict per (layer, impl), in layer order: layer, kind, input, output (height, width,
    channels), impl, dtype, forward_ms, backward_ms, forward_gflops, backward_gflops.
  """
  rows = []
  for name, cls, size, cin, cout in CAE_LAYERS:
    for impl in impls:
      row = time_layer(cls, size, cin, cout, impl=impl, dtype=dtype, batch=batch, repeats=repeats)
      rows.append({'layer': name, **row})
  return rows


def format_table(rows: Sequence[dict]) -> str:
  """Plain-text table of `layer_table` rows, with a total line per implementation."""
  header = (
    f'{"layer":<10} {"kind":<13} {"input":>13} {"output":>13} {"impl":<6} {"dtype":<8} '
    f'{"fwd ms":>8} {"bwd ms":>8} {"fwd GF/s":>9} {"bwd GF/s":>9}'
  )
  lines = [header, '-' * len(header)]
  shape = lambda s: 'x'.join(str(d) for d in s)
  for r in rows:
    lines.append(
      f'{r["layer"]:<10} {r["kind"]:<13} {shape(r["input"]):>13} '
      f'{shape(r["output"]):>13} {r["impl"]:<6} {r["dtype"]:<8} '
      f'{r["forward_ms"]:8.2f} {r["backward_ms"]:8.2f} '
      f'{r["forward_gflops"]:9.1f} {r["backward_gflops"]:9.1f}'
    )
  lines.append('-' * len(header))
  for impl in dict.fromkeys(r['impl'] for r in rows):
    mine = [r for r in rows if r['impl'] == impl]
    fwd, bwd = sum(r['forward_ms'] for r in mine), sum(r['backward_ms'] for r in mine)
    lines.append(
      f'{"total":<10} {"":<13} {"":>13} {"":>13} {impl:<6} {mine[0]["dtype"]:<8} '
      f'{fwd:8.2f} {bwd:8.2f}'
    )
  return '\n'.join(lines)
