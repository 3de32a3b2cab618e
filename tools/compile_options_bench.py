r"""Compile time and run time of a family's programs with and without XLA:CPU's fusion emitters:
the figures behind `uadjax.run.compiler`'s program kinds (docs/performance.md, start-up).

  .venv/bin/python tools/compile_options_bench.py --configs configs/headct/cae.py:quick \
      configs/headct/ssae.py:quick --programs=scoring,init,training --rounds=3

For each config, each program is lowered and compiled anew once per round with the fusion
emitters on and once off (in turn, so that a drift of the machine's speed touches both alike),
from an empty in-memory cache and with JAX's persistent cache off (run it as a script: the
switch holds only before the process's first compile), at the level its kind gets
(`uadjax.run.compiler.program_options`; both options are passed whatever XLA_FLAGS says):
  scoring   `outputs_fn(task)` (scores, maps, reconstructions) of `--images` random images;
  init      the engine's initial carry (`initial_carry(task.init(...))`), at -O0;
  training  `--steps` train steps of `train.batch_size` random images under one `lax.scan`.
Run time: the median of `--calls` calls after one untimed call (init: run once, not timed).
The outputs of the two forms are compared bit for bit in every round (`same`). A row per
(config, program, form) with every round's figures, then each one's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tools import benchmark  # noqa: E402
from uadjax import data
from uadjax.families import make_task  # noqa: E402
from uadjax.run import compiler
from uadjax.train.loop import initial_carry, outputs_fn  # noqa: E402
from uadjax.train.task import Batch  # noqa: E402

_KIND = {'scoring': compiler.SCORING, 'init': compiler.ONCE, 'training': compiler.TRAINING}


def _program(name: str, task, shape, args):
  """(function, its arguments) of program `name` for `task` on images of `shape`."""
  rng = np.random.default_rng(0)
  if name == 'init':
    return (lambda key: initial_carry(task.init(key, shape))), (jax.random.PRNGKey(0),)
  state = task.init(jax.random.PRNGKey(0), shape)
  if name == 'scoring':
    images = rng.uniform(size=(args.images, *shape)).astype(np.float32)
    return outputs_fn(task), (state.variables, images)
  images = rng.uniform(size=(args.batch, *shape)).astype(np.float32)
  labels = np.zeros(args.batch, np.int32)
  keys = jax.random.split(jax.random.PRNGKey(1), args.steps)

  def train(state, keys, images, labels):
    def body(state, key):
      state, metrics = task.train_step(state, Batch.of(images, labels), key)
      return state, metrics['loss']

    return jax.lax.scan(body, state, keys)[1]  # the losses: state buffers are not donated

  return train, (state, keys, images, labels)


def measure(spec: str, programs: list[str], args) -> list[dict]:
  """Rows of every round of every program of the config `spec`, emitters on then off."""
  config = benchmark.load_config(spec)
  task = make_task(config)
  shape = data.image_shape(config.data)
  args.batch = int(config.train.batch_size)
  rows = []
  for name in programs:
    fn, fn_args = _program(name, task, shape, args)
    level = compiler.program_options(task, _KIND[name])['level']
    same = True
    for _ in range(args.rounds):
      outputs = {}
      for emitters in (True, False):
        jax.clear_caches()
        options = {'xla_backend_optimization_level': level}
        options['xla_cpu_use_fusion_emitters'] = emitters
        lowered = jax.jit(fn, compiler_options=options).lower(*fn_args)
        start = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start
        run_ms = None
        if name != 'init':
          out = jax.block_until_ready(compiled(*fn_args))
          times = []
          for _ in range(args.calls):
            start = time.perf_counter()
            out = jax.block_until_ready(compiled(*fn_args))
            times.append(time.perf_counter() - start)
          run_ms = 1e3 * statistics.median(times)
        else:
          out = compiled(*fn_args)
        outputs[emitters] = jax.tree.map(np.asarray, out)
        rows.append(
          dict(
            config=spec,
            program=name,
            level=level,
            emitters=emitters,
            compile_s=compile_s,
            run_ms=run_ms,
          )
        )
        print(
          f'{spec} {name} -O{level} emitters {"on " if emitters else "off"}: compile '
          f'{compile_s:.2f} s' + (f', run {run_ms:.1f} ms' if run_ms else ''),
          flush=True,
        )
      same &= jax.tree.all(jax.tree.map(np.array_equal, outputs[True], outputs[False]))
    for row in rows:
      if row['program'] == name and row['config'] == spec:
        row['same'] = bool(same)
  return rows


def table(rows: list[dict]) -> str:
  """Markdown: one line per (config, program, form), every round and the median."""

  def figures(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
      return '-'
    return f'{fmt.format(statistics.median(values))} ({", ".join(fmt.format(v) for v in values)})'

  lines = [
    '| config | program | emitters | compile s, median (rounds) | run ms, median (rounds) '
    '| same bits |',
    '|---|---|---|---|---|---|',
  ]
  keys = dict.fromkeys((r['config'], r['program'], r['emitters']) for r in rows)
  for spec, name, emitters in keys:
    mine = [r for r in rows if (r['config'], r['program'], r['emitters']) == (spec, name, emitters)]
    lines.append(
      f'| {spec} | {name} (-O{mine[0]["level"]}) | {"on" if emitters else "off"} | '
      f'{figures([r["compile_s"] for r in mine], "{:.2f}")} | '
      f'{figures([r["run_ms"] for r in mine], "{:.1f}")} | {"yes" if mine[0]["same"] else "NO"} |'
    )
  return '\n'.join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', nargs='+', default=['configs/headct/cae.py:quick'])
  parser.add_argument('--programs', default='scoring,init,training')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--images', type=int, default=32, help='Images per scoring call.')
  parser.add_argument('--steps', type=int, default=40, help='Train steps per training call.')
  parser.add_argument('--calls', type=int, default=9, help='Timed calls per compiled program.')
  args = parser.parse_args(argv)
  programs = args.programs.split(',')
  unknown = sorted(set(programs) - set(_KIND))
  if unknown:
    parser.error(f'--programs: unknown {unknown}; expected some of {sorted(_KIND)}')
  # Every compile is timed from scratch: no program may come from JAX's persistent cache (JAX
  # decides whether it uses the cache at the process's first compile, so this comes first).
  jax.config.update('jax_enable_compilation_cache', False)
  print(f'{jax.devices()[0].device_kind}, jax {jax.__version__}', flush=True)
  rows = [row for spec in args.configs for row in measure(spec, programs, args)]
  print(table(rows))


if __name__ == '__main__':
  main()
