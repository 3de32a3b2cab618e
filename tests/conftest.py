"""Shared fixtures: the working directory, the session's compilation cache, and the finished
tiny runs that the tests which only read a run share (helpers are in tests/helpers.py)."""

from __future__ import annotations

import os

import pytest

from tests.helpers import REPO, cross_validate


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
def tiny_run(tmp_path_factory):
  """One finished tiny run on the phantoms, through the entry point with its report; shared by
  the report, compare and predict tests (training it is most of their time)."""
  workdir = tmp_path_factory.mktemp('tiny_run') / 'cae'
  cross_validate(workdir, '--report')
  return workdir
