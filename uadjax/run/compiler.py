"""`jit`: `jax.jit` with the compiler options uadjax's programs are compiled with.

On a CPU, XLA compiles each program through LLVM at -O3 by default. uadjax's programs (the epoch
engine's training call, the scoring program; `uadjax.train.loop`) compile at -O1 there instead
(`CPU_OPTIMIZATION_LEVEL`): measured on the 2-core development CPU, the CAE's training call
compiles in 7.0 s instead of 10.1 s (fold-parallel: 9.1 s instead of 14.0 s) and trains as fast
(device epochs 348 against 344 img/s, fold-parallel 284 against 281, host loop 268 against 258),
the SSAE's likewise (15.8 s against 23.0 s; 246 against 249 img/s); `python -m
experiments.benchmark --nolayers` with and without `XLA_FLAGS=--xla_backend_optimization_level=1`,
back to back (docs/performance.md, start-up). A task can ask for another level
(`Task.cpu_optimization_level`): DAGMM's programs trained 1-7 % slower at -O1 in three runs
against two, so DAGMM keeps -O3. What is not the same is the last bits of the rounding: a result
compiled at -O1 can differ from one compiled at -O3 in the sixth or seventh digit (the
validation AUCs of a 60-epoch CAE run moved by up to 0.003).

Programs differ in how often they run, and each kind (`task_jit`) gets the options that pay:
  TRAINING  the training call, a step, the host loop's validation, the select program: run for
            every epoch or validation, at the task's level, with XLA:CPU's fusion emitters.
  SCORING   scores, maps and reconstructions of batches of images (validation, test, reports,
            predictions): at the task's level, without the fusion emitters (XLA's older loop
            emitters) unless the task keeps them (`Task.cpu_scoring_fusion_emitters`). Measured
            on the 2-core development CPU (`tools/compile_options_bench.py`; docs/performance.md,
            start-up), the scoring programs of the CAE, SSAE, f-AnoGAN (64x64 and 256x256) and
            DAGMM compiled 35-45 % faster that way, ran as fast and gave the same results bit
            for bit; DenseNet121's compiled slower, so the classifier keeps the emitters. The
            training programs compile 40 % faster without them too, but train 6 % slower (the
            CAE: 381 against 404 img/s), so they keep them.
  ONCE      the initial state: at -O0 and without the fusion emitters (it runs once; the CAE's
            compiled in 0.47 s against 0.76 s with them, DenseNet121's in the same time).

The user's choice wins where they make one: with `XLA_FLAGS=--xla_backend_optimization_level=N`
(or `--xla_cpu_use_fusion_emitters=...`) in the environment that option is not passed over it.
Elsewhere than on a CPU no option is passed.
"""

from __future__ import annotations

import os

import jax

# LLVM's optimisation level for XLA:CPU programs (see the module docstring for the figures).
CPU_OPTIMIZATION_LEVEL = 1

# The kinds of program (`task_jit`; the module docstring says what each is compiled with).
TRAINING = 'training'
SCORING = 'scoring'
ONCE = 'once'
KINDS = (TRAINING, SCORING, ONCE)


def compiler_options(
  level: int = CPU_OPTIMIZATION_LEVEL, fusion_emitters: bool = True
) -> dict | None:
  """The options `jit` passes on a CPU: LLVM's `level`, and XLA:CPU's fusion emitters off where
  `fusion_emitters` is False; an option that XLA_FLAGS sets is left to it. None elsewhere, or
  when nothing is left to pass."""
  if jax.default_backend() != 'cpu':
    return None
  flags = os.environ.get('XLA_FLAGS', '')
  options = {}
  if 'xla_backend_optimization_level' not in flags:
    options['xla_backend_optimization_level'] = int(level)
  if not fusion_emitters and 'xla_cpu_use_fusion_emitters' not in flags:
    options['xla_cpu_use_fusion_emitters'] = False
  return options or None


def jit(fn, level: int = CPU_OPTIMIZATION_LEVEL, fusion_emitters: bool = True, **kwargs):
  """`jax.jit(fn, **kwargs)` compiled with `compiler_options(level, fusion_emitters)`.

  Every program of a run goes through here (`task_jit` gives the options of its kind), and the
  reports and predictions compile theirs the same way, so that they share the persistent
  compilation cache's entries (the options are part of an entry's key). Top-level programs
  only: JAX refuses compiler options on a `jit` that is traced inside another (a task's `init`
  inside the engine's initial-state program uses plain `jax.jit`).
  """
  return jax.jit(fn, compiler_options=compiler_options(level, fusion_emitters), **kwargs)


def cpu_optimization_level(task) -> int:
  """The level `jit` compiles `task`'s training and scoring programs at on a CPU (the task's
  `cpu_optimization_level`; the compiler's default for a task without one)."""
  return int(getattr(task, 'cpu_optimization_level', CPU_OPTIMIZATION_LEVEL))


def program_options(task, kind: str) -> dict:
  """`jit`'s `level` and `fusion_emitters` for a program of `kind` (TRAINING, SCORING, ONCE)
  of `task` (any object; a task's class flags override the defaults)."""
  if kind == TRAINING:
    return {'level': cpu_optimization_level(task), 'fusion_emitters': True}
  if kind == SCORING:
    emitters = bool(getattr(task, 'cpu_scoring_fusion_emitters', False))
    return {'level': cpu_optimization_level(task), 'fusion_emitters': emitters}
  if kind == ONCE:
    return {'level': 0, 'fusion_emitters': False}
  raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')


def task_jit(fn, task, kind: str, **kwargs):
  """`jit(fn, **kwargs)` with the options of `task`'s programs of `kind` (`program_options`)."""
  return jit(fn, **program_options(task, kind), **kwargs)
