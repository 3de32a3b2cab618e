r"""Start-up latency and whole-process time of a short run, against another checkout and the
PyTorch peer: the figures of docs/performance.md, "Start-up".

  .venv/bin/python tools/startup_bench.py --runs=5 --cache=cold --other=/path/to/other/checkout
  .venv/bin/python tools/startup_bench.py --runs=3 --cache=cold,warm --report \
      --peer_python=/path/to/torch/venv/bin/python

Each run is `python -m experiments.cross_validate --config=configs/headct/cae.py:quick
--config.cv.iterations=0 --config.train.epochs=60` (`--config` and `--args` to change it) on the
real head CT, as a fresh process with its own workdir, timed from its start to its exit:
  wall         the whole process;
  training     from the process's start to the return of its first training call: every
               program the first epochs need is compiled (or read from the cache) and they
               are running (JAX dispatches asynchronously; the first epoch ends one epoch
               later, ~0.2 s for the CAE here). Clocked by wrapping `uadjax.run.compiler.jit`
               for the training function (`train` or `train_epochs`) in the timed process
               only; nothing is added to the programs, so the persistent cache works as usual;
  first line   to its first progress line (after `cv.val_every` epochs and a validation).
`--cache=cold` gives every run an empty compilation cache, and empty folders beside it for the
config checks and the decoded images (a machine's first run); `warm` a cache (and folders)
that an untimed run of the same checkout filled first. Checkouts (this one, then
`--other`) and the peer run in turn, round after round, so that a drift of the machine's speed
touches each alike; the table gives each one's median and the ratio of its median to the
first's (and to the peer's). The interpreter is this one: the other checkout's own code is
imported (it is first on the path), its dependencies are this environment's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / 'shared' / 'data' / 'head_ct'
PEER = REPO.parent / 'shared' / 'peer' / 'torch_cae.py'
MARK = 'STARTUP_BENCH_TRAINING'


class _Clocked:
  """A jitted training function that prints the time of its first call's return: the first
  epochs are compiled (or loaded) and dispatched (JAX runs them asynchronously)."""

  def __init__(self, jitted, t0: float):
    self._jitted, self._t0, self._said = jitted, t0, False

  def __call__(self, *args, **kwargs):
    out = self._jitted(*args, **kwargs)
    if not self._said:
      self._said = True
      print(f'{MARK} {time.time() - self._t0:.3f}', flush=True)
    return out

  def __getattr__(self, name):  # lower, eval_shape, ...: the jitted function's own
    return getattr(self._jitted, name)


def _child(argv: list[str]) -> None:
  """In the timed process: clock the training call's first dispatch, run the entry point."""
  t0 = float(os.environ['STARTUP_BENCH_T0'])
  sys.path.insert(0, os.getcwd())
  from uadjax.run import compiler

  jit = compiler.jit

  def clocked_jit(fn, *args, **kwargs):
    jitted = jit(fn, *args, **kwargs)
    # The training call: `train` (validations inside), `train_epochs` (between calls).
    if getattr(fn, '__name__', '') in ('train', 'train_epochs'):
      return _Clocked(jitted, t0)
    return jitted

  compiler.jit = clocked_jit
  sys.argv = ['cross_validate', *argv]
  runpy.run_module('experiments.cross_validate', run_name='__main__')


def _time(cmd: list[str], cwd, env, first_line: str) -> dict:
  """Runs `cmd` and returns its wall time, training start and first progress line (seconds)."""
  start = time.time()
  env = {**env, 'STARTUP_BENCH_T0': repr(start)}
  proc = subprocess.Popen(
    cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )
  row = {'training': None, 'first line': None}
  tail = []
  for line in proc.stdout:
    tail = (tail + [line])[-20:]
    if line.startswith(MARK) and row['training'] is None:
      row['training'] = float(line.split()[1])
    if row['first line'] is None and first_line in line:
      row['first line'] = time.time() - start
  proc.wait()
  row['wall'] = time.time() - start
  if proc.returncode:
    raise SystemExit(f'{" ".join(cmd)} failed ({proc.returncode}):\n{"".join(tail)}')
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--runs', type=int, default=3, help='Rounds.')
  parser.add_argument('--cache', default='cold', help="'cold', 'warm' or 'cold,warm'.")
  parser.add_argument('--other', action='append', default=[], help='Another checkout to time.')
  parser.add_argument('--config', default='configs/headct/cae.py:quick')
  parser.add_argument(
    '--args',
    default='--config.cv.iterations=0 --config.train.epochs=60',
    help='Further flags of experiments.cross_validate.',
  )
  parser.add_argument('--report', action='store_true', help='Let the runs write their report.')
  parser.add_argument(
    '--data', default=str(HEAD_CT), help="data.root (the real head CT; '' for the config's own)."
  )
  parser.add_argument('--peer_python', help='A python with torch: also time the PyTorch peer.')
  parser.add_argument('--peer_epochs', type=int, default=60)
  parser.add_argument('--child', nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child is not None:
    _child(args.child)
    return

  checkouts = [str(REPO), *(os.path.abspath(o) for o in args.other)]
  flags = [f'--config={args.config}', *args.args.split()]
  if args.data:
    flags.append(f'--config.data.root={args.data}')
  if not args.report:
    flags.append('--noreport')
  first_line = ': epoch '  # the progress lines: 'iteration 0: epoch 20/60  loss ...'
  scratch = pathlib.Path(tempfile.mkdtemp(prefix='startup_bench_'))
  results: dict[tuple[str, str], list[dict]] = {}
  try:
    for cache_mode in args.cache.split(','):
      warm = {c: scratch / f'warm_{k}' for k, c in enumerate(checkouts)}
      if cache_mode == 'warm':  # one untimed run per checkout fills its cache
        for c in checkouts:
          _run_once(c, flags, scratch, warm[c], first_line)
      for r in range(args.runs):
        for c in checkouts:
          cache = warm[c] if cache_mode == 'warm' else scratch / f'cold_{r}_{checkouts.index(c)}'
          row = _run_once(c, flags, scratch, cache, first_line)
          results.setdefault((c, cache_mode), []).append(row)
          print(f'{cache_mode} {c}: ' + ', '.join(_fmt(k, v) for k, v in row.items()), flush=True)
          if cache_mode == 'cold':
            shutil.rmtree(cache, ignore_errors=True)
        if args.peer_python:
          cmd = [args.peer_python, str(PEER), '--images', args.data or str(HEAD_CT)]
          row = _time(cmd + ['--epochs', str(args.peer_epochs)], REPO, dict(os.environ), '\0')
          results.setdefault(('PyTorch peer', cache_mode), []).append(row)
          print(f'{cache_mode} peer: wall {row["wall"]:.1f} s', flush=True)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  _table(results, checkouts)


def _run_once(checkout, flags, scratch, cache, first_line) -> dict:
  workdir = tempfile.mkdtemp(prefix='run_', dir=scratch)
  env = {**os.environ, 'UADJAX_COMPILATION_CACHE': str(cache)}
  cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), '--child', *flags]
  try:
    return _time(cmd + [f'--workdir={workdir}'], checkout, env, first_line)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def _fmt(key, value) -> str:
  return f'{key} {value:.1f} s' if value is not None else f'{key} -'


def _table(results: dict, checkouts: list[str]) -> None:
  """Medians (min-max) per checkout and cache, and ratios to the first checkout and the peer."""
  print(
    '\n| checkout | cache | runs | wall s | training s | first line s | wall / first | '
    'wall / peer |'
  )
  print('|---|---|---:|---|---|---|---:|---:|')
  for (name, mode), rows in results.items():
    peer = results.get(('PyTorch peer', mode))  # the peer's runs of the same rounds
    peer_wall = statistics.median(r['wall'] for r in peer) if peer else None
    cells = []
    for key in ('wall', 'training', 'first line'):
      values = [r[key] for r in rows if r[key] is not None]
      cells.append(
        f'{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})' if values else '-'
      )
    wall = statistics.median(r['wall'] for r in rows)
    first = results.get((checkouts[0], mode))
    ratio = wall / statistics.median(r['wall'] for r in first) if first else float('nan')
    vs_peer = f'{wall / peer_wall:.2f}' if peer_wall else '-'
    print(f'| {name} | {mode} | {len(rows)} | {" | ".join(cells)} | {ratio:.2f} | {vs_peer} |')


if __name__ == '__main__':
  main()
