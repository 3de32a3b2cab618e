"""Shared fixtures: the working directory, the session's compilation cache, and one finished
tiny run per family for the tests that only read a run (a test that changes a run changes a
copy: shutil.copytree). Helpers are in tests/helpers.py."""

from __future__ import annotations

import os

import pytest

from tests.helpers import REPO, cross_validate, make_config


@pytest.fixture(autouse=True)
def _run_from_repo(monkeypatch):
  """Config files name data relative to the repository ('../shared/data/...')."""
  monkeypatch.chdir(REPO)


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
def _tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('tiny_run') / 'cae'
  done = cross_validate(workdir, '--report')
  return workdir, done.stdout


@pytest.fixture(scope='session')
def tiny_run(_tiny_run):
  """The CAE's tiny protocol on the phantoms, run through the entry point like a user would,
  with its report: the protocol, report, compare, predict, rescore and fault tests read it
  (training it is most of their time)."""
  return _tiny_run[0]


@pytest.fixture(scope='session')
def tiny_run_stdout(_tiny_run):
  """What the entry point printed for `tiny_run` (its results table)."""
  return _tiny_run[1]


@pytest.fixture(scope='session')
def ssae_run(tmp_path_factory):
  """The SSAE's tiny protocol on the phantoms (protocol_lib.run)."""
  from uadjax import protocol as protocol_lib

  workdir = tmp_path_factory.mktemp('ssae_run') / 'ssae'
  protocol_lib.run(make_config('configs/headct/ssae.py:tiny,phantoms'), str(workdir))
  return workdir


@pytest.fixture(scope='session')
def fanogan_run(tmp_path_factory):
  """f-AnoGAN's tiny protocol on the phantoms, both phases (protocol_lib.run)."""
  from uadjax import protocol as protocol_lib

  workdir = tmp_path_factory.mktemp('fanogan_run') / 'run'
  protocol_lib.run(make_config('configs/headct/fanogan.py:tiny,phantoms'), str(workdir))
  return workdir
