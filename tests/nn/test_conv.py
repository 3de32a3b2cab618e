"""The fast convolution forms against the plain `lax` ones: outputs, gradients, params, vmap."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uadjax.nn.conv import Conv, ConvTranspose

# (height = width, in, out) of the CAE's five encoder convs, plus odd sizes and channel counts.
CONV_SHAPES = [
  (64, 1, 32),
  (32, 32, 64),
  (16, 64, 128),
  (8, 128, 256),
  (4, 256, 512),
  (7, 3, 5),
  (6, 5, 7),
]
# The CAE's four decoder blocks and its output layer, plus odd ones (3 and 2 outputs take the
# thin-output path of the fast form).
CONV_T_SHAPES = [
  (2, 512, 256),
  (4, 256, 128),
  (8, 128, 64),
  (16, 64, 32),
  (32, 32, 1),
  (3, 5, 7),
  (5, 3, 2),
]
CASES = [(Conv, s) for s in CONV_SHAPES] + [(ConvTranspose, s) for s in CONV_T_SHAPES]
IDS = [f'{cls.__name__}-{h}x{h}-{c}-{f}' for cls, (h, c, f) in CASES]
BATCH = 2


def _both(cls, shape, dtype):
  """(output, grads w.r.t. (params, input)) of the plain and the fast module, same params.

  Data and parameters come from numpy and the two forms share one jitted program: XLA:CPU
  compiles cost ~0.3 s each, and jitted random number generation several seconds.
  """
  h, c, f = shape
  rng = np.random.default_rng(h * 1000 + c * 10 + f)
  x = rng.normal(size=(BATCH, h, h, c)).astype(np.float32)
  # A nonzero bias, so that its gradient and its addition are both exercised.
  params = {
    'kernel': (rng.normal(size=(3, 3, c, f)) / np.sqrt(9 * c)).astype(np.float32),
    'bias': rng.normal(size=(f,)).astype(np.float32),
  }
  out_hw = h // 2 + h % 2 if cls is Conv else 2 * h
  # A random cotangent: with a sum of ones XLA could simplify the backward pass away.
  ct = rng.normal(size=(BATCH, out_hw, out_hw, f)).astype(np.float32)

  @jax.jit
  def run(params, x, ct):
    out = {}
    for impl in ('plain', 'fast'):
      module = cls(f, dtype=dtype, impl=impl)

      def loss(params, x, module=module):
        y = module.apply({'params': params}, x)
        return jnp.sum(y.astype(jnp.float32) * ct), y

      (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
      out[impl] = y, grads
    return out

  return run(params, x, ct)


def _random_params(module, x, seed=0):
  """Random float32 parameters of `module`'s shapes, from numpy (no compile)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)['params']
  return jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(np.float32), shapes)


def _assert_close(actual, expected, tol):
  """Max abs difference within tol x the expected array's largest magnitude (at least 1)."""
  actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
  assert actual.shape == expected.shape
  scale = max(1.0, float(np.max(np.abs(expected))))
  err = float(np.max(np.abs(actual - expected)))
  assert err <= tol * scale, f'max abs error {err:.3g} > {tol:g} x {scale:.3g}'


def _assert_all_close(out, tol):
  """Fast output and gradients (input, kernel, bias) against the plain ones."""
  (y_plain, (gp_plain, gx_plain)), (y_fast, (gp_fast, gx_fast)) = out['plain'], out['fast']
  _assert_close(y_fast, y_plain, tol)
  _assert_close(gx_fast, gx_plain, tol)
  _assert_close(gp_fast['kernel'], gp_plain['kernel'], tol)
  _assert_close(gp_fast['bias'], gp_plain['bias'], tol)


@pytest.mark.parametrize('cls,shape', CASES, ids=IDS)
def test_fast_matches_plain_float32(cls, shape):
  out = _both(cls, shape, jnp.float32)
  _assert_all_close(out, 1e-5)


BF16_CASES = [(Conv, (32, 32, 64)), (ConvTranspose, (2, 512, 256)), (ConvTranspose, (32, 32, 1))]


@pytest.mark.parametrize('cls,shape', BF16_CASES, ids=[f'{c.__name__}-{s}' for c, s in BF16_CASES])
def test_fast_matches_plain_bfloat16(cls, shape):
  out = _both(cls, shape, jnp.bfloat16)
  y_fast, (gp_fast, gx_fast) = out['fast']
  # Compute dtype is honoured: bf16 activations, float32 parameter gradients.
  assert y_fast.dtype == jnp.bfloat16
  assert gp_fast['kernel'].dtype == gp_fast['bias'].dtype == jnp.float32
  # bf16 keeps 8 bits of mantissa, and the plain form rounds differently (bf16 products).
  _assert_all_close(out, 3e-2)


FLAX_CASES = [(Conv, (7, 3, 5)), (ConvTranspose, (3, 5, 7))]


@pytest.mark.parametrize('cls,shape', FLAX_CASES, ids=[f'{c.__name__}-{s}' for c, s in FLAX_CASES])
def test_matches_flax_layer(cls, shape):
  """Both forms compute the Flax layer the module docstring names, with its parameter tree."""
  h, c, f = shape
  if cls is Conv:
    ref = nn.Conv(f, (3, 3), strides=2, padding=1)
  else:
    ref = nn.ConvTranspose(f, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)))

  @jax.jit
  def outputs(x):
    params = ref.init(jax.random.key(0), x)['params']
    params = {**params, 'bias': jnp.linspace(-1.0, 1.0, f)}
    return {
      name: m.apply({'params': params}, x)
      for name, m in (('ref', ref), ('plain', cls(f, impl='plain')), ('fast', cls(f, impl='fast')))
    }

  x = np.random.default_rng(0).normal(size=(BATCH, h, h, c)).astype(np.float32)
  out = outputs(x)
  _assert_close(out['plain'], out['ref'], 1e-5)
  _assert_close(out['fast'], out['ref'], 1e-5)


@pytest.mark.parametrize('cls', [Conv, ConvTranspose])
def test_param_tree_identical_between_impls(cls):
  x = jnp.zeros((1, 8, 8, 3))
  trees = {
    impl: cls(5, impl=impl).init(jax.random.key(0), x)['params']
    for impl in ('plain', 'fast', 'auto')
  }
  shapes = {impl: jax.tree.map(lambda a: (a.shape, a.dtype), t) for impl, t in trees.items()}
  assert (
    shapes['plain']
    == shapes['fast']
    == shapes['auto']
    == {'kernel': ((3, 3, 3, 5), jnp.float32), 'bias': ((5,), jnp.float32)}
  )
  # Same initialisers and the same parameter names, so the same key gives the same values.
  for impl in ('fast', 'auto'):
    jax.tree.map(np.testing.assert_array_equal, trees[impl], trees['plain'])


VMAP_CASES = [(Conv, (8, 4, 6)), (ConvTranspose, (4, 6, 8)), (ConvTranspose, (4, 6, 1))]


@pytest.mark.parametrize('cls,shape', VMAP_CASES, ids=[f'{c.__name__}-{s}' for c, s in VMAP_CASES])
def test_vmap_over_batched_params(cls, shape):
  """Folds of cross-validation: params and data both batched, forward and gradients."""
  h, c, f = shape
  folds = 3

  xs = np.random.default_rng(0).normal(size=(folds, BATCH, h, h, c)).astype(np.float32)
  params = jax.tree.map(
    lambda *a: np.stack(a), *[_random_params(cls(f), xs[0], seed) for seed in range(folds)]
  )

  @jax.jit
  def run(params, xs):
    out = {}
    for impl in ('plain', 'fast'):
      module = cls(f, impl=impl)

      def loss(params, x, m=module):
        return jnp.sum(jnp.sin(m.apply({'params': params}, x)))

      value_and_grads = jax.value_and_grad(loss, argnums=(0, 1))
      out[impl] = jax.vmap(value_and_grads)(params, xs)
      # Per fold, the vmapped result is the unbatched one.
      out[impl + '_fold1'] = value_and_grads(jax.tree.map(lambda a: a[1], params), xs[1])
    return out

  out = run(params, xs)
  jax.tree.map(lambda a, b: _assert_close(a, b, 1e-5), out['fast'], out['plain'])
  jax.tree.map(lambda a, b: _assert_close(a[1], b, 1e-5), out['fast'], out['fast_fold1'])


def test_scan_of_gradient_steps():
  """The fast forms work as the body of `lax.scan` (an epoch of steps)."""

  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
      return ConvTranspose(2, impl='fast')(nn.relu(Conv(4, impl='fast')(x)))

  model = Tiny()
  xs = np.random.default_rng(0).normal(size=(3, BATCH, 8, 8, 2)).astype(np.float32)
  params = _random_params(model, xs[0])

  def step(params, x):
    loss, grads = jax.value_and_grad(lambda p: jnp.mean((model.apply({'params': p}, x) - x) ** 2))(
      params
    )
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss

  _, losses = jax.jit(lambda p: jax.lax.scan(step, p, xs))(params)
  assert losses.shape == (3,) and bool(jnp.all(jnp.isfinite(losses)))


def test_auto_is_fast_on_cpu():
  """'auto' is resolved at trace time: on CPU the jaxpr holds no convolution at all."""
  x = jnp.zeros((1, 8, 8, 3))
  for module in (Conv(16), ConvTranspose(16), ConvTranspose(1)):
    params = {'params': _random_params(module, x)}
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p, m=module: jnp.sum(m.apply(p, x))))(params))
    assert ('conv_general_dilated' in jaxpr) == (jax.default_backend() != 'cpu')


def test_unknown_impl_is_rejected():
  with pytest.raises(ValueError, match='impl'):
    Conv(4, impl='cudnn').init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize(
  'kernel_size, strides, padding',
  [
    ((1, 1), 1, 'SAME'),
    ((3, 3), 1, 1),
    ((7, 7), 2, 3),
    ((3, 3), 2, 'VALID'),
    ((2, 3), (1, 2), ((0, 1), (2, 0))),
  ],
)
def test_conv2d_fast_equals_flax_conv_values_and_gradients(kernel_size, strides, padding):
  from uadjax.nn.conv import Conv2D

  x = jax.random.normal(jax.random.PRNGKey(0), (2, 11, 12, 5))
  fast = Conv2D(6, kernel_size, strides=strides, padding=padding, impl='fast')
  plain = nn.Conv(6, kernel_size, strides=strides, padding=padding)
  variables = fast.init(jax.random.PRNGKey(1), x)
  # Same parameter tree as nn.Conv, so checkpoints and weight mappings carry over.
  ref_shapes = jax.tree.map(jnp.shape, plain.init(jax.random.PRNGKey(1), x))
  assert jax.tree.map(jnp.shape, variables) == ref_shapes
  np.testing.assert_allclose(fast.apply(variables, x), plain.apply(variables, x), atol=1e-5)
  loss = lambda m, v, x: jnp.sum(jnp.sin(m.apply(v, x)))
  g_fast = jax.grad(lambda v, x: loss(fast, v, x), argnums=(0, 1))(variables, x)
  g_plain = jax.grad(lambda v, x: loss(plain, v, x), argnums=(0, 1))(variables, x)
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_plain), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_uadjax_conv_impl_forces_a_form_of_auto_layers(monkeypatch):
  from uadjax.nn import conv as conv_lib

  monkeypatch.setenv('UADJAX_CONV_IMPL', 'plain')
  assert conv_lib.resolve_impl('auto') == 'plain'
  assert conv_lib.resolve_impl('fast') == 'fast'  # an explicit choice stays
  monkeypatch.setenv('UADJAX_CONV_IMPL', 'fast')
  assert conv_lib.resolve_impl('auto') == 'fast'
  monkeypatch.setenv('UADJAX_CONV_IMPL', 'bogus')
  with pytest.raises(ValueError, match='UADJAX_CONV_IMPL'):
    conv_lib.resolve_impl('auto')
