"""uadjax.run.compiler: the options every program is compiled with."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from uadjax.run import compiler


def test_cpu_programs_compile_at_o1_unless_xla_flags_choose(monkeypatch):
  assert jax.default_backend() == 'cpu'
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  assert compiler.compiler_options() == {'xla_backend_optimization_level': 1}
  assert compiler.compiler_options(3) == {'xla_backend_optimization_level': 3}
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
  assert compiler.compiler_options() == {'xla_backend_optimization_level': 1}
  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=3')
  assert compiler.compiler_options() is None


def test_fusion_emitters_are_switched_off_only_where_asked_and_xla_flags_do_not_choose(
  monkeypatch,
):
  monkeypatch.delenv('XLA_FLAGS', raising=False)
  off = {'xla_backend_optimization_level': 1, 'xla_cpu_use_fusion_emitters': False}
  assert compiler.compiler_options(1, fusion_emitters=False) == off
  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=0')
  assert compiler.compiler_options(1, fusion_emitters=False) == {
    'xla_cpu_use_fusion_emitters': False
  }
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_use_fusion_emitters=true')
  assert compiler.compiler_options(1, fusion_emitters=False) == {
    'xla_backend_optimization_level': 1
  }


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


def test_each_kind_of_program_gets_its_tasks_options():
  from uadjax.families.cae.task import ReconstructionTask
  from uadjax.families.dagmm.task import DAGMMTask
  from uadjax.families.densenet.task import ClassifierTask

  options = compiler.program_options
  T, S, ONCE = compiler.TRAINING, compiler.SCORING, compiler.ONCE
  assert options(ReconstructionTask, T) == {'level': 1, 'fusion_emitters': True}
  assert options(ReconstructionTask, S) == {'level': 1, 'fusion_emitters': False}
  assert options(DAGMMTask, T) == {'level': 3, 'fusion_emitters': True}
  assert options(DAGMMTask, S) == {'level': 3, 'fusion_emitters': False}
  assert options(ClassifierTask, S) == {'level': 1, 'fusion_emitters': True}
  for task in (ReconstructionTask, DAGMMTask, ClassifierTask):
    assert options(task, ONCE) == {'level': 0, 'fusion_emitters': False}
  with pytest.raises(ValueError, match='kind must be one of'):
    options(ReconstructionTask, 'eval')


def test_the_engine_compiles_each_program_as_its_kind(monkeypatch):
  from tests.helpers import make_config
  from uadjax import protocol as protocol_lib

  engine = protocol_lib.Protocol(make_config('configs/headct/dagmm.py:tiny,phantoms')).engine
  seen = []
  monkeypatch.setattr(
    compiler, 'jit', lambda fn, level, fusion_emitters, **kw: seen.append((level, fusion_emitters))
  )
  engine.compiled_epochs()
  engine.compiled_train(2, True)  # fold-parallel: the validations inside
  engine.compiled_select()
  engine.compiled_step()
  engine.compiled_validate(False)
  engine.compiled_outputs()
  engine.compiled_init((32, 32, 1))
  assert seen == [(3, True)] * 5 + [(3, False), (0, False)]
