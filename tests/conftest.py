"""Shared fixtures: the working directory, the session's compilation cache, and one finished
tiny run per family for the tests that only read a run (a test that changes a run changes a
copy: shutil.copytree). Under pytest-xdist the workers share the cache and the runs
(`tests.helpers.shared_dir`): each is built once per session, not once per worker. Helpers are
in tests/helpers.py."""

from __future__ import annotations

import os

import pytest

from tests.helpers import REPO, cross_validate, make_config, shared_dir

# Everything the tests compile at LLVM's -O0 (uadjax's own programs compile at -O1 on a CPU,
# uadjax.run.compiler, unless XLA_FLAGS names a level; the eager operations of the unit tests at
# -O3 by default). The tests' tiny models spend their time compiling, not running: the whole
# suite took 314 s at -O0 against 427 s at -O1 on the 2-core development CPU, back to back, the
# same 309 tests passing. Subprocesses inherit it; a level set in XLA_FLAGS wins.
if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_backend_optimization_level=0'
  ).strip()


@pytest.fixture(autouse=True)
def _run_from_repo(monkeypatch):
  """Config files name data relative to the repository ('../shared/data/...')."""
  monkeypatch.chdir(REPO)


@pytest.fixture(scope='session', autouse=True)
def _compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the session, shared by the xdist workers, in this process and
  its subprocesses (the entry points read UADJAX_COMPILATION_CACHE): the tiny runs compile the
  same programs, and the tests never write to the user's own cache folder. Two processes
  writing one entry at once is harmless: JAX reads a half-written entry as a miss (a failed
  decompression) and compiles."""
  from uadjax.run import compilation_cache

  path = str(shared_dir(tmp_path_factory, 'xla_cache', lambda folder: None))
  os.environ[compilation_cache.ENV] = path
  compilation_cache.setup()
  yield


@pytest.fixture(scope='session')
def _tiny_run(tmp_path_factory):
  def build(folder):
    done = cross_validate(folder / 'cae', '--report')
    (folder / 'stdout.txt').write_text(done.stdout)

  folder = shared_dir(tmp_path_factory, 'tiny_run', build)
  return folder / 'cae', (folder / 'stdout.txt').read_text()


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

  def build(folder):
    protocol_lib.run(make_config('configs/headct/ssae.py:tiny,phantoms'), str(folder / 'ssae'))

  return shared_dir(tmp_path_factory, 'ssae_run', build) / 'ssae'


@pytest.fixture(scope='session')
def fanogan_run(tmp_path_factory):
  """f-AnoGAN's tiny protocol on the phantoms, both phases (protocol_lib.run)."""
  from uadjax import protocol as protocol_lib

  def build(folder):
    protocol_lib.run(make_config('configs/headct/fanogan.py:tiny,phantoms'), str(folder / 'run'))

  return shared_dir(tmp_path_factory, 'fanogan_run', build) / 'run'
