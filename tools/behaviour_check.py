r"""Behaviour before and after a restructuring: every family's `:tiny` run, compared value by value.

  # on the old code (e.g. a worktree of the commit before the change):
  python tools/behaviour_check.py record --out=/tmp/before
  # on the new code:
  python tools/behaviour_check.py record --out=/tmp/after
  python tools/behaviour_check.py compare /tmp/before /tmp/after
  # the old run folders, read by the new code (restore, report, predict):
  python tools/behaviour_check.py restore /tmp/before

`record` runs each family's `:tiny` config through the entry point (`experiments.cross_validate`,
the public command, which a restructuring must keep) into OUT/<family>/run and writes
OUT/<family>/values.json: the summary's metrics and every iteration's selected epoch, threshold
and test scores. The head-CT families run on the built-in phantoms; the fundus ones on
`../shared/data/drimdb` (skipped, and said so, where it is absent).

`compare` prints one line per family and value that differs (exactly; the runs are
deterministic on one CPU) and exits 1 if any does. `restore` loads every iteration of each
recorded run with today's `uadjax.inference`, checks that its test scores equal the ones the old
code wrote, and runs the report and predict commands on the folder; it exits 1 on a difference
or a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIMDB = os.path.join(ROOT, '..', 'shared', 'data', 'drimdb')

# family -> (config, whether it needs DRIMDB).
FAMILIES = {
  'cae': ('configs/headct/cae.py:tiny,phantoms', False),
  'ssae': ('configs/headct/ssae.py:tiny,phantoms', False),
  'dagmm': ('configs/headct/dagmm.py:tiny,phantoms', False),
  'intensity': ('configs/headct/intensity.py:tiny,phantoms', False),
  'fanogan': ('configs/headct/fanogan.py:tiny,phantoms', False),
  'densenet': ('configs/fundus/densenet.py:tiny', True),
  'fundus_fanogan': ('configs/fundus/fanogan.py:tiny', True),
}


def _python(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)


def values(workdir: str) -> dict:
  """What a run's behaviour is judged by: summary metrics and each iteration's selection,
  threshold and test scores."""
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  out = {'summary': summary['metrics'], 'iterations': {}}
  if 'extra_test' in summary:
    out['extra_test'] = summary['extra_test']['metrics']
  for i in summary['iterations']:
    with open(os.path.join(workdir, f'iter_{i:02d}', 'metrics.json')) as f:
      m = json.load(f)
    out['iterations'][str(i)] = {
      'selected_epoch': m['selected_epoch'],
      'selection_metric': m['selection_metric'],
      'threshold': m['threshold'],
      'val_scores': m['val_scores'],
      'test_scores': m['test_scores'],
      'train_loss': m['history']['train_loss'],
    }
  return out


def record(out: str, families: list[str]) -> int:
  """Runs each family's :tiny config into OUT/<family>/run; writes OUT/<family>/values.json."""
  failed = 0
  for name in families:
    config, needs_drimdb = FAMILIES[name]
    if needs_drimdb and not os.path.isdir(os.path.join(DRIMDB, 'Good')):
      print(f'{name}: skipped (DRIMDB is not at {DRIMDB})')
      continue
    workdir = os.path.join(out, name, 'run')
    done = _python('-m', 'experiments.cross_validate', f'--config={config}', f'--workdir={workdir}')
    if done.returncode != 0:
      print(f'{name}: FAILED (exit {done.returncode})\n{done.stderr[-3000:]}')
      failed += 1
      continue
    with open(os.path.join(out, name, 'values.json'), 'w') as f:
      json.dump(values(workdir), f, indent=1)
    print(f'{name}: recorded {workdir}')
  return 1 if failed else 0


def _differences(a, b, path: str) -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    out = [f'{path}.{k}: only in one' for k in sorted(set(a) ^ set(b))]
    for k in sorted(set(a) & set(b)):
      out += _differences(a[k], b[k], f'{path}.{k}')
    return out
  if isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      return [f'{path}: {len(a)} values against {len(b)}']
    return [
      d
      for k, (x, y) in enumerate(zip(a, b, strict=True))
      for d in _differences(x, y, f'{path}[{k}]')
    ]
  if a != b and not (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)):
    return [f'{path}: {a!r} against {b!r}']
  return []


def compare(before: str, after: str) -> int:
  """Prints every value that differs between two recordings; 1 if any does."""
  differing = 0
  for name in FAMILIES:
    paths = [os.path.join(d, name, 'values.json') for d in (before, after)]
    if not all(os.path.exists(p) for p in paths):
      print(f'{name}: not in both recordings')
      continue
    a, b = (json.load(open(p)) for p in paths)
    diffs = _differences(a, b, name)
    differing += bool(diffs)
    n = sum(len(it['test_scores']) for it in a['iterations'].values())
    print(
      f'{name}: ' + ('identical' if not diffs else f'{len(diffs)} values differ'),
      f'({n} test scores)',
    )
    for d in diffs[:20]:
      print('  ', d)
  return 1 if differing else 0


def restore(before: str) -> int:
  """Today's code on the recorded (old) run folders: load, rescore, report, predict."""
  sys.path.insert(0, ROOT)
  from uadjax import data, inference

  failures = 0
  for name in FAMILIES:
    workdir = os.path.join(before, name, 'run')
    if not os.path.isdir(workdir):
      continue
    problems = []
    config = inference.load_config(workdir)
    dataset = data.load(config.data)
    index = {n: k for k, n in enumerate(dataset.names)}
    for model in inference.load_models(workdir):
      with open(os.path.join(workdir, f'iter_{model.iteration:02d}', 'metrics.json')) as f:
        m = json.load(f)
      idx = [index[n] for n in m['test_names']]
      scores, _ = model.score(dataset.images[idx])
      worst = float(np.max(np.abs(np.asarray(scores) - np.asarray(m['test_scores']))))
      if not np.allclose(scores, m['test_scores'], rtol=1e-5, atol=1e-6):
        problems.append(f'iteration {model.iteration}: test scores differ by up to {worst:.3g}')
    report_out = os.path.join(before, name, 'report_now')
    done = _python('-m', 'experiments.report', f'--workdir={workdir}', f'--out={report_out}')
    if done.returncode != 0 or not os.path.exists(os.path.join(report_out, 'report.md')):
      problems.append(f'report failed (exit {done.returncode}): {done.stderr[-1500:]}')
    images = config.data.root
    if config.data.source == 'phantoms':
      images = os.path.join(before, name, 'phantom_images')
      _write_phantoms(dataset, images)
    done = _python(
      '-m',
      'experiments.predict',
      f'--run={workdir}',
      f'--images={images}',
      f'--out={os.path.join(before, name, "predict_now")}',
      '--overlays=false',
    )
    if done.returncode != 0:
      problems.append(f'predict failed (exit {done.returncode}): {done.stderr[-1500:]}')
    failures += bool(problems)
    print(
      f'{name}: '
      + ('restores, reports and predicts; test scores equal' if not problems else 'PROBLEMS')
    )
    for p in problems:
      print('  ', p)
  return 1 if failures else 0


def _write_phantoms(dataset, folder: str, n: int = 8) -> None:
  """A few of the phantom images as PNG files, for predict."""
  from PIL import Image

  os.makedirs(folder, exist_ok=True)
  for k in range(n):
    x = np.asarray(dataset.images[k][..., 0])
    Image.fromarray((np.clip(x, 0, 1) * 255).astype(np.uint8)).save(
      os.path.join(folder, f'{k:03d}.png')
    )


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  sub = parser.add_subparsers(dest='command', required=True)
  r = sub.add_parser('record')
  r.add_argument('--out', required=True)
  r.add_argument('--families', default=','.join(FAMILIES))
  c = sub.add_parser('compare')
  c.add_argument('before')
  c.add_argument('after')
  s = sub.add_parser('restore')
  s.add_argument('before')
  args = parser.parse_args()
  if args.command == 'record':
    return record(args.out, args.families.split(','))
  if args.command == 'compare':
    return compare(args.before, args.after)
  return restore(args.before)


if __name__ == '__main__':
  sys.exit(main())
