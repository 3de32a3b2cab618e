"""The protocol end to end on tiny configs: files, resuming, determinism, restoring, devices."""

import json
import os
import shutil

import numpy as np
import pytest

from tests.helpers import (
  TINY_CAE,
  cross_validate,
  env_without_gpu,
  last_json,
  make_config,
  python,
  requires_head_ct,
)
from uadjax import protocol as protocol_lib
from uadjax.run import checkpoint


def _metrics(workdir, i):
  return json.loads((workdir / f'iter_{i:02d}' / 'metrics.json').read_text())


def test_entry_point_writes_results_checkpoints_and_table(tiny_run, tiny_run_stdout):
  workdir, stdout = tiny_run, tiny_run_stdout
  assert '| CAE (uadjax) |' in stdout and 'synthetic phantoms' in stdout
  assert '| CAE (study) |' not in stdout  # real-data rows are not set beside phantom results
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['n_iterations'] == 2 and set(summary['metrics']) >= {'auc', 'f1', 'recall'}
  for i in (0, 1):
    m = _metrics(workdir, i)
    assert m['selected_epoch'] in m['validation']['epoch']
    assert len(m['test_scores']) == len(m['test_labels']) == m['n_test']
    assert m['history']['epoch'] == [1, 2, 3, 4]
    assert 0 <= m['test']['auc'] <= 1 and m['threshold']['method'] == 'f1'
    ckpts = workdir / f'iter_{i:02d}' / 'checkpoints'
    assert (ckpts / 'best').is_dir() and sorted(os.listdir(ckpts / 'latest')) == ['2', '4']
  assert json.loads((workdir / 'config.json').read_text())['model_name'] == 'cae'


def test_same_seed_same_summary(tiny_run, tmp_path):
  workdir = tiny_run
  cross_validate(tmp_path / 'again')
  assert (tmp_path / 'again' / 'summary.json').read_text() == (workdir / 'summary.json').read_text()


def test_interrupted_iteration_resumes_from_its_latest_checkpoint(tiny_run, tmp_path):
  workdir = tiny_run
  resumed = tmp_path / 'resumed'
  shutil.copytree(workdir, resumed, ignore=shutil.ignore_patterns('report'))
  # As if killed after epoch 2 of iteration 1 was saved: no epoch 4, no best, no metrics.
  it1 = resumed / 'iter_01'
  os.remove(it1 / 'metrics.json')
  shutil.rmtree(it1 / 'checkpoints' / 'best')
  shutil.rmtree(it1 / 'checkpoints' / 'latest' / '4')
  os.remove(resumed / 'summary.json')
  done = cross_validate(resumed)
  assert 'Iteration 0: already done' in done.stderr
  assert 'Iteration 1: resuming from epoch 2' in done.stderr
  before, after = _metrics(workdir, 1), _metrics(resumed, 1)
  assert after['history']['epoch'] == [1, 2, 3, 4]
  np.testing.assert_allclose(after['test_scores'], before['test_scores'], rtol=1e-4)
  assert after['selected_epoch'] == before['selected_epoch']


def test_a_different_config_in_the_same_workdir_is_refused(tiny_run, tmp_path):
  workdir = tmp_path / 'run'  # a copy: were the refusal to fail, the shared run would change
  shutil.copytree(tiny_run, workdir, ignore=shutil.ignore_patterns('report'))
  config = make_config(TINY_CAE, **{'optimizer.learning_rate': 1.0})
  with pytest.raises(ValueError, match='optimizer.learning_rate'):
    protocol_lib.run(config, str(workdir))


RESTORE_SCRIPT = """
import json, sys
import jax.numpy as jnp
import numpy as np
import uadjax.run.checkpoint
from uadjax import data
from uadjax.families.cae import CAE
from configs.headct import cae

workdir = sys.argv[1]
config = json.load(open(f'{workdir}/config.json'))
metrics = json.load(open(f'{workdir}/iter_00/metrics.json'))
model = CAE(**config['model'])
variables = uadjax.run.checkpoint.restore(f'{workdir}/iter_00/checkpoints/best')
ds = data.load(cae.get_config('tiny,phantoms').data)
index = [ds.names.index(n) for n in metrics['test_names']]
x = jnp.asarray(ds.images[index])
out = model.apply({'params': variables['params'], 'batch_stats': variables['batch_stats']}, x,
                  train=False)
scores = np.mean((np.asarray(out['reconstruction']) - np.asarray(x)) ** 2, axis=(1, 2, 3))
print(json.dumps({'max_diff': float(np.max(np.abs(scores - metrics['test_scores']))),
                  'epoch': int(variables['epoch'])}))
"""


def test_checkpoint_restores_in_a_fresh_process(tiny_run):
  workdir = tiny_run
  result = last_json(python('-c', RESTORE_SCRIPT, str(workdir)))
  assert result['max_diff'] < 1e-5
  assert result['epoch'] == _metrics(workdir, 0)['selected_epoch']


def test_checkpoint_restore_names_a_missing_path(tmp_path):
  with pytest.raises(FileNotFoundError, match='no checkpoint'):
    checkpoint.restore(str(tmp_path / 'nothing'))


def test_four_devices_give_the_same_metrics(tiny_run, tmp_path):
  workdir = tiny_run
  env = env_without_gpu()
  env['XLA_FLAGS'] += ' --xla_force_host_platform_device_count=4'
  done = cross_validate(tmp_path / 'multi', env=env)
  assert '4 devices' in done.stderr
  for i in (0, 1):
    np.testing.assert_allclose(
      _metrics(tmp_path / 'multi', i)['test_scores'], _metrics(workdir, i)['test_scores'], rtol=1e-4
    )


def test_host_loop_with_albumentations_runs(tmp_path):
  config = make_config(TINY_CAE, **{'augment.backend': 'albumentations', 'cv.iterations': '0'})
  summary = protocol_lib.run(config, str(tmp_path / 'host'))
  assert summary['n_iterations'] == 1 and 0 <= summary['metrics']['auc']['mean'] <= 1


@requires_head_ct
def test_tiny_protocol_on_the_real_head_ct(tmp_path):
  config = make_config('configs/headct/cae.py:tiny')
  assert config.data.source == 'folder_csv' and config.data.root.endswith('head_ct')
  summary = protocol_lib.run(config, str(tmp_path / 'real'))
  assert summary['n_iterations'] == 2
  m = json.loads((tmp_path / 'real' / 'iter_00' / 'metrics.json').read_text())
  assert m['n_train'] == 60 and m['n_val'] == 70 and m['n_test'] == 70


def test_bad_data_root_fails_before_writing_anything(tmp_path):
  config = make_config('configs/headct/cae.py:tiny', **{'data.root': str(tmp_path / 'missing')})
  with pytest.raises(Exception, match='missing'):
    protocol_lib.run(config, str(tmp_path / 'work'))
  assert not (tmp_path / 'work').exists()
