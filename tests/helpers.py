"""What the tests share besides fixtures: where the repository and the real data are, configs
with overrides, the cross-validation entry point in a subprocess, and its progress log."""

from __future__ import annotations

import importlib
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'
HEAD_CT = SHARED_DATA / 'head_ct'

requires_head_ct = pytest.mark.skipif(
  not (HEAD_CT / 'labels.csv').exists(),
  reason=f'the real head CT set is not at {HEAD_CT} (a fresh clone has no ../shared/data)',
)

TINY_CAE = 'configs/headct/cae.py:tiny,phantoms'


def make_config(spec: str, **overrides):
  """The config `spec` names as the entry point's --config does (the file, then its variants:
  'configs/headct/cae.py:tiny,phantoms'), with `overrides` as 'a.b' keys."""
  path, _, variants = spec.partition(':')
  module = importlib.import_module(path.removesuffix('.py').replace('/', '.'))
  config = module.get_config(variants or None)
  for key, value in overrides.items():
    node = config
    *parents, last = key.split('.')
    for part in parents:
      node = node[part]
    node[last] = value
  return config


def env_without_gpu() -> dict:
  """The environment for subprocesses: CPU only, repository on the path."""
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = str(REPO)
  return env


def cross_validate_cmd(workdir, *flags, config: str = TINY_CAE) -> list[str]:
  """The command line of `python -m experiments.cross_validate`."""
  cmd = [sys.executable, '-m', 'experiments.cross_validate', f'--config={config}']
  return [*cmd, f'--workdir={workdir}', *flags]


def cross_validate(workdir, *flags, config: str = TINY_CAE, env=None, timeout=600):
  """`python -m experiments.cross_validate` in a subprocess (CPU only unless `env` says
  otherwise); asserts it succeeded and returns the CompletedProcess."""
  done = subprocess.run(
    cross_validate_cmd(workdir, *flags, config=config),
    cwd=REPO,
    env=env or env_without_gpu(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def epochs_logged(workdir) -> int:
  """The last epoch a running protocol wrote to WORKDIR/progress.csv (0 before its first)."""
  path = workdir / 'progress.csv'
  if not path.exists():
    return 0
  rows = path.read_text().strip().splitlines()[1:]
  return max((int(r.split(',')[2]) for r in rows), default=0)
