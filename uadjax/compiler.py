"""`jit`: `jax.jit` with the compiler options uadjax's programs are compiled with.

On a CPU, XLA compiles each program through LLVM at -O3 by default. uadjax's programs (the epoch
engine's training call, the scoring program; `uadjax.train.loop`) compile at -O1 there instead
(`CPU_OPTIMIZATION_LEVEL`; the initial state, which runs once, at -O0): measured on the 2-core
development CPU, the CAE's training call compiles in 7.0 s instead of 10.1 s (fold-parallel: 9.1
s instead of 14.0 s) and trains as fast (device epochs 348 against 344 img/s, fold-parallel 284
against 281, host loop 268 against 258), the SSAE's likewise (15.8 s against 23.0 s; 246 against
249 img/s); `python -m experiments.benchmark --nolayers` with and without
`XLA_FLAGS=--xla_backend_optimization_level=1`, back to back (README, "Start-up: compiling").
A task can ask for another level (`Task.cpu_optimization_level`): DAGMM's programs trained
1-7 % slower at -O1 in three runs against two, so DAGMM keeps -O3. What is not the same is the
last bits of the rounding: a result compiled at -O1 can differ from one compiled at -O3 in the
sixth or seventh digit (the validation AUCs of a 60-epoch CAE run moved by up to 0.003).

The user's choice wins where they make one: with `XLA_FLAGS=--xla_backend_optimization_level=N`
in the environment no level is passed over it. Elsewhere than on a CPU no option is passed.
"""

from __future__ import annotations

import os

import jax

# LLVM's optimisation level for XLA:CPU programs (see the module docstring for the figures).
CPU_OPTIMIZATION_LEVEL = 1


def compiler_options(level: int = CPU_OPTIMIZATION_LEVEL) -> dict | None:
  """The options `jit` passes: LLVM's `level` on a CPU, unless XLA_FLAGS sets a level; else
  None."""
  if jax.default_backend() != 'cpu':
    return None
  if 'xla_backend_optimization_level' in os.environ.get('XLA_FLAGS', ''):
    return None
  return {'xla_backend_optimization_level': int(level)}


def jit(fn, level: int = CPU_OPTIMIZATION_LEVEL, **kwargs):
  """`jax.jit(fn, **kwargs)` compiled with `compiler_options(level)`.

  Every program of a run goes through here (at its task's `cpu_optimization_level`), and the
  reports and predictions compile theirs the same way, so that they share the persistent
  compilation cache's entries (the options are part of an entry's key). Top-level programs
  only: JAX refuses compiler options on a `jit` that is traced inside another (a task's `init`
  inside the engine's initial-state program uses plain `jax.jit`).
  """
  return jax.jit(fn, compiler_options=compiler_options(level), **kwargs)


def cpu_optimization_level(task) -> int:
  """The level `jit` compiles `task`'s programs at on a CPU (the task's
  `cpu_optimization_level`; the compiler's default for a task without one)."""
  return int(getattr(task, 'cpu_optimization_level', CPU_OPTIMIZATION_LEVEL))
