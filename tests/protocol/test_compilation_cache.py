"""Start-up costs: the persistent compilation cache (where it lives, how it is switched, that a
run reading it gives what a compiling run gives) and the report that keeps up-to-date figures."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from tests.helpers import TINY_CAE, cross_validate, env_without_gpu, make_config
from uadjax import inference
from uadjax import protocol as protocol_lib
from uadjax.reports import report
from uadjax.run import compilation_cache


def test_cache_folder_default_path_and_off():
  default = compilation_cache.cache_dir({'HOME': '/home/u'})
  assert default.startswith('/home/u/.cache/uadjax/jax/')
  xdg = compilation_cache.cache_dir({'HOME': '/home/u', 'XDG_CACHE_HOME': '/x'})
  assert xdg.startswith('/x/uadjax/jax/') and os.path.basename(xdg) == os.path.basename(default)
  assert compilation_cache.cache_dir({'UADJAX_COMPILATION_CACHE': '/c/d'}) == '/c/d'
  for off in ('off', 'OFF', '0', 'false'):
    assert compilation_cache.cache_dir({'UADJAX_COMPILATION_CACHE': off}) is None
  # JAX's own variable is kept when ours is not set; ours wins when both are.
  assert compilation_cache.cache_dir({'JAX_COMPILATION_CACHE_DIR': '/j'}) == '/j'
  both = {'JAX_COMPILATION_CACHE_DIR': '/j', 'UADJAX_COMPILATION_CACHE': 'off'}
  assert compilation_cache.cache_dir(both) is None


def _run(workdir, cache, *flags):
  return cross_validate(
    workdir, *flags, env={**env_without_gpu(), compilation_cache.ENV: str(cache)}
  )


def _read(path):
  return json.loads(path.read_text())


def test_a_run_from_the_cache_gives_the_results_of_a_compiling_one(tmp_path):
  cache = tmp_path / 'cache'  # empty: the first run compiles everything and fills it
  _run(tmp_path / 'cold', cache)
  entries = set(os.listdir(cache))
  assert any('train' in name for name in entries), entries
  done = _run(tmp_path / 'warm', cache, '--report')
  # The warm run and its report compile no scoring program of their own: the report's is the
  # run's, compiler options included (they are part of an entry's key, not of the text below).
  new = set(os.listdir(cache)) - entries
  assert any('outputs' in name for name in entries) and not [n for n in new if 'outputs' in n]
  assert f'Compilation cache: {cache}' in done.stderr
  assert _read(tmp_path / 'cold' / 'summary.json') == _read(tmp_path / 'warm' / 'summary.json')
  for i in (0, 1):
    cold, warm = (_read(tmp_path / w / f'iter_{i:02d}' / 'metrics.json') for w in ('cold', 'warm'))
    assert cold['test_scores'] == warm['test_scores'] and cold['history'] == warm['history']

  # The report's scoring program is the one the run scored its test sets with (so it is read
  # from the cache): the same text, sharding annotations included.
  model = inference.load_models(str(tmp_path / 'cold'), [0])[0]
  batch = jnp.zeros((model.batch, *model.image_shape), jnp.float32)
  engine = protocol_lib.Protocol(make_config(TINY_CAE)).engine
  as_in_the_run = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), model.variables)
  assert (
    model.compiled['outputs'].lower(model.variables, batch).as_text()
    == engine.compiled_outputs().lower(as_in_the_run, batch).as_text()
  )

  # The report again, nothing changed: every figure is kept as it is, report.md the same.
  folder = tmp_path / 'warm' / 'report'
  figures = sorted(p for p in folder.iterdir() if p.suffix == '.png')
  assert len(figures) == 6
  before = {p: p.stat().st_mtime_ns for p in figures}
  text = (folder / 'report.md').read_text()
  report.write_report(str(tmp_path / 'warm'))
  assert {p: p.stat().st_mtime_ns for p in figures} == before
  assert (folder / 'report.md').read_text() == text
  # A newer metrics.json: its figures are drawn again.
  metrics = tmp_path / 'warm' / 'iter_00' / 'metrics.json'
  os.utime(metrics, ns=(metrics.stat().st_atime_ns, max(before.values()) + 10**9))
  report.write_report(str(tmp_path / 'warm'))
  assert (folder / 'training_curves.png').stat().st_mtime_ns > before[
    folder / 'training_curves.png'
  ]
  assert (folder / 'report.md').read_text() == text
