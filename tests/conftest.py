"""Shared fixtures: paths to the real data (skipped when absent) and tiny configs."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'
HEAD_CT = SHARED_DATA / 'head_ct'

requires_head_ct = pytest.mark.skipif(
  not (HEAD_CT / 'labels.csv').exists(),
  reason=f'the real head CT set is not at {HEAD_CT} (a fresh clone has no ../shared/data)',
)


@pytest.fixture(autouse=True)
def _run_from_repo(monkeypatch):
  """Config files name data relative to the repository ('../shared/data/...')."""
  monkeypatch.chdir(REPO)


def tiny_config(*variants: str, **overrides):
  """configs/headct/cae.py with the given variants ('tiny' always), overrides as 'a.b' keys."""
  from configs.headct import cae

  config = cae.get_config(','.join(('tiny', *variants)))
  for key, value in overrides.items():
    node = config
    *path, last = key.split('.')
    for part in path:
      node = node[part]
    node[last] = value
  return config


def epochs_logged(workdir) -> int:
  """The last epoch a running protocol wrote to WORKDIR/progress.csv (0 before its first)."""
  path = workdir / 'progress.csv'
  if not path.exists():
    return 0
  rows = path.read_text().strip().splitlines()[1:]
  return max((int(r.split(',')[2]) for r in rows), default=0)


def cross_validate(workdir, *flags, config='configs/headct/cae.py:tiny,phantoms', env=None):
  """`python -m experiments.cross_validate` in a subprocess (CPU only unless `env` says
  otherwise); asserts it succeeded and returns the CompletedProcess."""
  import subprocess
  import sys

  cmd = [sys.executable, '-m', 'experiments.cross_validate', f'--config={config}']
  cmd += [f'--workdir={workdir}', *flags]
  done = subprocess.run(
    cmd, cwd=REPO, env=env or env_without_gpu(), capture_output=True, text=True, timeout=600
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def env_without_gpu() -> dict:
  """The environment for subprocesses: CPU only, repository on the path."""
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = str(REPO)
  return env


@pytest.fixture(scope='session', autouse=True)
def _compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the session, in this process and its subprocesses (the entry
  points read UADJAX_COMPILATION_CACHE): the tiny runs compile the same programs, and the
  tests never write to the user's own cache folder."""
  from uadjax import compilation_cache

  path = str(tmp_path_factory.mktemp('xla_cache'))
  os.environ[compilation_cache.ENV] = path
  compilation_cache.setup()
  yield


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """One finished tiny run on the phantoms, through the entry point with its report; shared by
  the report, compare and predict tests (training it is most of their time)."""
  workdir = tmp_path_factory.mktemp('tiny_run') / 'cae'
  cross_validate(workdir, '--report')
  return workdir
