"""uadjax.compiler: the options every program is compiled with."""

import jax
import jax.numpy as jnp
import numpy as np

from uadjax import compiler


def test_cpu_programs_compile_at_o1_unless_xla_flags_choose(monkeypatch):
  assert jax.default_backend() == 'cpu'
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  assert compiler.compiler_options() == {'xla_backend_optimization_level': 1}
  assert compiler.compiler_options(3) == {'xla_backend_optimization_level': 3}
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  assert compiler.compiler_options() == {'xla_backend_optimization_level': 1}
  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=3')
  assert compiler.compiler_options() is None


def test_jit_passes_its_options_and_computes_what_jax_jit_does(monkeypatch):
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  seen = {}
  real_jit = jax.jit

  def spy(fn, **kwargs):
    seen.update(kwargs)
    return real_jit(fn, **kwargs)

  monkeypatch.setattr(compiler.jax, 'jit', spy)
  fn = compiler.jit(lambda x: jnp.tanh(x) @ x.T, donate_argnums=())
  x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
  np.testing.assert_allclose(fn(x), np.tanh(x) @ x.T, rtol=1e-6)
  assert seen['compiler_options'] == {'xla_backend_optimization_level': 1}


def test_each_task_compiles_at_its_level():
  from tests.helpers import make_config
  from uadjax import protocol as protocol_lib

  assert protocol_lib.Protocol(make_config('configs/headct/cae.py:tiny,phantoms')).engine.level == 1
  assert (
    protocol_lib.Protocol(make_config('configs/headct/dagmm.py:tiny,phantoms')).engine.level == 3
  )
