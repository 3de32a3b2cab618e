r"""Where a run's start-up time goes: every function JAX compiles, how often, and for how long.

  .venv/bin/python tools/compile_report.py --config=configs/headct/cae.py:quick \
      --config.cv.iterations=0 --config.train.epochs=60

Runs the protocol (`uadjax.protocol.run`) and then the report (`--noreport` to skip) in this
process, in a temporary workdir (`--workdir` to choose), with JAX's monitoring listeners on,
and prints one row per compiled function: the phase it compiled in (setup: data and initial
state; train; evaluate: validation and test scores after training; summary; report), how many
times it was traced, lowered and compiled, and the seconds of each. Functions that JAX runs one
operation at a time (eager `jnp` calls outside any `jit`) are compiled too, once per primitive
and shape; they are rows of their own. A phase line gives its wall time and how much of it
compiling was.

By default the persistent compilation cache is a fresh, empty folder (`--cache=cold`: what a
first run on a machine pays); `--cache=user` keeps the user's cache (`uadjax.run.compilation_cache`,
what a second run pays; a hit shows as 'hit' and its load time as compile time), `--cache=off`
turns it off.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file (see configs/).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run folder (default: a temporary one).')
_REPORT = flags.DEFINE_bool('report', True, 'Also write the report after the run.')
_CACHE = flags.DEFINE_enum(
  'cache', 'cold', ['cold', 'user', 'off'], 'Persistent compilation cache: cold | user | off.'
)
flags.mark_flags_as_required(['config'])

_TRACE = '/jax/core/compile/jaxpr_trace_duration'
_LOWER = '/jax/core/compile/jaxpr_to_mlir_module_duration'
_COMPILE = '/jax/core/compile/backend_compile_duration'
_HIT = '/jax/compilation_cache/cache_hits'


class Recorder:
  """Collects JAX's compile events per (phase, function) and wall time per phase."""

  def __init__(self):
    self.phase = 'setup'
    self.rows = collections.defaultdict(lambda: collections.Counter())
    self.phases: dict[str, float] = collections.defaultdict(float)
    self.first_seen: dict[tuple, int] = {}
    # Per thread: the training call compiles in a thread of its own while the initial state
    # compiles (uadjax.protocol.group.Group.compile_ahead); JAX reports each on its thread.
    self._pending = threading.local()

  def _row(self, name: str) -> collections.Counter:
    # Compile events name the module ('jit(train)', 'jit_train'); trace events the function.
    if name.startswith('jit(') and name.endswith(')'):
      name = name[4:-1]
    key = (self.phase, name.removeprefix('jit_'))
    self.first_seen.setdefault(key, len(self.first_seen))
    return self.rows[key]

  def on_duration(self, event: str, seconds: float, **kwargs) -> None:
    """A `jax.monitoring` duration listener."""
    name = str(kwargs.get('fun_name', '?'))
    if event == _TRACE:
      row = self._row(name)
      row['traces'] += 1
      row['trace_s'] += seconds
    elif event == _LOWER:
      self._row(name)['lower_s'] += seconds
    elif event == _COMPILE:
      row = self._row(name)
      row['compiles'] += 1
      row['compile_s'] += seconds
      if getattr(self._pending, 'hit', False):
        row['hits'] += 1
        self._pending.hit = False

  def on_event(self, event: str, **kwargs) -> None:
    """A `jax.monitoring` event listener: marks the compile that follows as a cache hit."""
    if event == _HIT:
      self._pending.hit = True

  @contextlib.contextmanager
  def in_phase(self, name: str):
    """Attributes the compiles (and wall time) of the block to phase `name`."""
    previous, self.phase = self.phase, name
    start = time.perf_counter()
    try:
      yield
    finally:
      self.phases[name] += time.perf_counter() - start
      self.phase = previous

  def table(self) -> str:
    """The Markdown table: named functions first, then the eager operations summed per phase."""
    lines = [
      '| phase | function | traces | compiles | hits | trace s | lower s | compile s |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    eager = collections.defaultdict(collections.Counter)
    totals = collections.defaultdict(float)
    for key in sorted(self.rows, key=self.first_seen.get):
      phase, name = key
      row = self.rows[key]
      totals[phase] += row['trace_s'] + row['lower_s'] + row['compile_s']
      if row['trace_s'] + row['lower_s'] + row['compile_s'] < 0.05 and row['compiles'] <= 1:
        eager[phase].update(row)
        eager[phase]['functions'] += 1
        continue
      lines.append(_line(phase, name, row))
    for phase, row in eager.items():
      lines.append(_line(phase, f'({row["functions"]} others, each < 0.05 s)', row))
    lines += ['', '| phase | wall s | of which trace + lower + compile s |', '|---|---:|---:|']
    for phase, wall in self.phases.items():
      lines.append(f'| {phase} | {wall:.1f} | {totals[phase]:.1f} |')
    n = sum(r['compiles'] for r in self.rows.values())
    s = sum(r['trace_s'] + r['lower_s'] + r['compile_s'] for r in self.rows.values())
    lines.append(f'| all | {sum(self.phases.values()):.1f} | {s:.1f} ({n} compiles) |')
    return '\n'.join(lines)


def _line(phase: str, name: str, row) -> str:
  return (
    f'| {phase} | {name} | {row["traces"]} | {row["compiles"]} | {row["hits"]} | '
    f'{row["trace_s"]:.2f} | {row["lower_s"]:.2f} | {row["compile_s"]:.2f} |'
  )


def _wrap(recorder: Recorder, owner, attribute: str, phase: str) -> None:
  """Replaces `owner.attribute` by the same function run inside `recorder.in_phase(phase)`."""
  fn = getattr(owner, attribute)

  def wrapped(*args, **kwargs):
    with recorder.in_phase(phase):
      return fn(*args, **kwargs)

  setattr(owner, attribute, wrapped)


def main(argv):
  del argv
  start = time.perf_counter()
  if _CACHE.value == 'cold':
    os.environ['UADJAX_COMPILATION_CACHE'] = tempfile.mkdtemp(prefix='uadjax_cold_cache_')
  elif _CACHE.value == 'off':
    os.environ['UADJAX_COMPILATION_CACHE'] = 'off'

  import jax

  from uadjax import protocol, runtime
  from uadjax.protocol import evaluate, group
  from uadjax.reports import report

  recorder = Recorder()
  jax.monitoring.register_event_duration_secs_listener(recorder.on_duration)
  jax.monitoring.register_event_listener(recorder.on_event)
  _wrap(recorder, group.Group, 'train', 'train')
  _wrap(recorder, evaluate, 'evaluate', 'evaluate')
  _wrap(recorder, evaluate, 'write_summary', 'summary')
  runtime.setup()
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='uadjax_compile_report_')
  run_start = time.perf_counter()
  protocol.run(_CONFIG.value, workdir)
  # What protocol.run spends outside the wrapped phases: data, splits, initial states, workdir.
  recorder.phases['setup'] += (time.perf_counter() - run_start) - sum(
    v for k, v in recorder.phases.items() if k != 'setup'
  )
  if _REPORT.value:
    with recorder.in_phase('report'):
      report.write_report(workdir)
  print(recorder.table())
  print(
    f'\nprocess {time.perf_counter() - start:.1f} s after imports; cache {_CACHE.value} '
    f'({os.environ.get("UADJAX_COMPILATION_CACHE", "default")}); workdir {workdir}'
  )


if __name__ == '__main__':
  app.run(main)
