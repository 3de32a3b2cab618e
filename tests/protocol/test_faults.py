"""Faults a user meets: bad config fields, a busy workdir, SIGTERM / Ctrl-C, changed data,
another data set than the study's, and the permissions of the result files."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers import (
  HEAD_CT,
  REPO,
  TINY_CAE,
  cross_validate,
  cross_validate_cmd,
  env_without_gpu,
  epochs_logged,
  make_config,
  requires_head_ct,
)
from uadjax import config as config_lib
from uadjax import io
from uadjax import protocol as protocol_lib
from uadjax.protocol import setup as setup_lib
from uadjax.run import fingerprint, lock

# -- one validation pass before anything is written ---------------------------------------------

BAD_FIELDS = [
  ('cv.threshold', 'bogus', "expected one of ('f1', 'normal_quantile', 'fixed')"),
  ('data.image_size', 63, 'cannot take 63x63 images'),
  ('train.batch_size', -1, 'must be a positive integer'),
  ('train.batch_size', 0, 'must be a positive integer'),
  ('cv.iterations', '0,99', 'iterations [99] do not exist (0..9)'),
  ('train.epochs', 0, 'must be a positive integer'),
  ('train.epochs', -2, 'must be a positive integer'),
  ('train.epochs', 5, 'must be a positive multiple of cv.val_every=2'),
  ('cv.val_every', 0, 'must be a positive integer'),
  ('train.dtype', 'float16', "expected one of ('auto', 'float32', 'bfloat16')"),
  ('cv.selection', 'best', "expected one of ('val_auc', 'val_loss', 'last')"),
  ('model_name', 'vae', 'expected one of'),
  ('augment.backend', 'torch', "expected one of ('jax', 'albumentations')"),
  ('data.source', 'folder', 'expected one of'),
  ('cv.threshold_quantile', 1.5, 'must be a number in (0, 1)'),
]


@pytest.mark.parametrize(
  'field,value,allowed', BAD_FIELDS, ids=[f'{f}={v}' for f, v, _ in BAD_FIELDS]
)
def test_each_bad_field_is_refused_before_any_file(field, value, allowed, tmp_path):
  config = make_config(TINY_CAE, **{field: value})
  workdir = tmp_path / 'run'
  with pytest.raises(config_lib.ConfigError) as e:
    protocol_lib.run(config, str(workdir))
  message = str(e.value)
  assert f'{field}={value!r}' in message or f'{field}={str(value)!r}' in message, message
  assert allowed in message
  assert not workdir.exists(), 'a refused config must not create the workdir'


def test_every_bad_field_is_named_at_once():
  config = make_config(TINY_CAE, **{'cv.threshold': 'bogus', 'train.batch_size': 0})
  with pytest.raises(config_lib.ConfigError, match='(?s)train.batch_size=0.*cv.threshold'):
    config_lib.validate(config)


def test_the_shipped_configs_are_valid():
  import importlib

  for module in (
    'configs.headct.cae',
    'configs.headct.ssae',
    'configs.headct.dagmm',
    'configs.headct.fanogan',
    'configs.headct.intensity',
    'configs.headct.feature_gaussian',
    'configs.headct.padim',
    'configs.headct.patchcore',
    'configs.fundus.densenet',
    'configs.fundus.fanogan',
  ):
    get_config = importlib.import_module(module).get_config
    variants = (None, 'quick', 'tiny') + (('cpu',) if module.startswith('configs.headct') else ())
    for variant in variants:
      config_lib.validate(get_config(variant), check_model=variant == 'tiny')


def test_the_gan_networks_follow_the_data_image_size():
  # A --config.data.image_size override reaches f-AnoGAN's networks (once a traceback deep in
  # the GAN hand-over, with model.image_size left at 64).
  config = make_config('configs/headct/fanogan.py:tiny', **{'data.image_size': 16})
  assert config.model.image_size == 16
  config_lib.validate(config, check_model=True)


def test_the_entry_point_exits_2_naming_the_field_and_creates_nothing(tmp_path):
  workdir = tmp_path / 'run'
  done = subprocess.run(
    cross_validate_cmd(workdir, '--config.cv.threshold=bogus'),
    cwd=REPO,
    env=env_without_gpu(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 2, done.stderr[-2000:]
  assert "cv.threshold='bogus'" in done.stderr
  assert 'Traceback' not in done.stderr
  assert not workdir.exists()


def test_a_restored_run_with_a_bad_field_is_refused_naming_its_config(tiny_run, tmp_path):
  from uadjax import inference

  run = tmp_path / 'run'
  shutil.copytree(tiny_run, run)
  saved = io.read_json(run / 'config.json')
  saved['cv']['threshold'] = 'bogus'
  io.write_json(run / 'config.json', saved)
  with pytest.raises(inference.RunError, match=r"(?s)config.json.*cv.threshold='bogus'"):
    inference.load_config(str(run))


# -- one run per workdir ------------------------------------------------------------------------

_HOLDER = """
import sys, time
from uadjax.run.lock import WorkdirLock
WorkdirLock(sys.argv[1]).acquire()
print('locked', flush=True)
time.sleep(120)
"""


def _hold_lock(workdir) -> subprocess.Popen:
  holder = subprocess.Popen(
    [sys.executable, '-c', _HOLDER, str(workdir)],
    cwd=REPO,
    env=env_without_gpu(),
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == 'locked'
  return holder


def test_a_second_run_into_a_busy_workdir_is_refused_naming_the_holder(tmp_path):
  workdir = tmp_path / 'run'
  holder = _hold_lock(workdir)
  try:
    start = time.time()
    with pytest.raises(lock.WorkdirBusyError, match=f'process {holder.pid} on .*, started'):
      protocol_lib.run(make_config(TINY_CAE), str(workdir))
    assert time.time() - start < 60
    assert os.listdir(workdir) == ['.lock'], 'the refused run must write nothing'
  finally:
    holder.kill()
    holder.wait()
  # The holder died without releasing: its lock is stale, and taken over.
  with lock.WorkdirLock(str(workdir)) as held:
    assert json.loads(open(held.path).read())['pid'] == os.getpid()


def test_readers_see_the_finished_iterations_of_a_busy_run(tiny_run, tmp_path):
  from uadjax import inference
  from uadjax.reports import compare, write_report

  run = tmp_path / 'run'
  shutil.copytree(tiny_run, run)
  shutil.rmtree(run / 'report', ignore_errors=True)
  os.remove(run / 'iter_01' / 'metrics.json')  # iteration 1 is still training
  holder = _hold_lock(run)
  try:
    assert sorted(inference.finished_iterations(str(run))) == [0]
    assert os.path.exists(write_report(str(run)))
    table = compare.compare_runs([str(run)], str(tmp_path / 'cmp'))
    assert os.path.exists(tmp_path / 'cmp' / 'comparison.md'), table
  finally:
    holder.kill()
    holder.wait()


# -- clean stops ----------------------------------------------------------------------------------

# One iteration at a time, as the CPU variants train (uadjax.train.loop.EpochsCall).
_LONG = [
  '--config.cv.parallel=False',
  '--config.train.epochs=300',
  '--config.cv.val_every=2',
  '--config.cv.epochs_per_call=2',
  '--config.cv.checkpoint_every=1000',
  '--config.cv.iterations=0',
  '--noreport',
]


def _stop_at(workdir, signum, epoch: int) -> subprocess.CompletedProcess:
  proc = subprocess.Popen(
    cross_validate_cmd(workdir, *_LONG),
    cwd=REPO,
    env=env_without_gpu(),
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 240
  while epochs_logged(workdir) < epoch and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signum)
  _, stderr = proc.communicate(timeout=240)
  return subprocess.CompletedProcess(proc.args, proc.returncode, '', stderr)


def test_sigterm_at_a_random_epoch_saves_and_the_rerun_gives_the_same_summary(tmp_path):
  epoch = random.Random().randrange(6, 120, 2)
  print(f'SIGTERM after epoch {epoch}')
  stopped = tmp_path / 'stopped'
  done = _stop_at(stopped, signal.SIGTERM, epoch)
  assert done.returncode == 128 + signal.SIGTERM, done.stderr[-3000:]
  saved = [
    int(e) for e in os.listdir(stopped / 'iter_00' / 'checkpoints' / 'latest') if e.isdigit()
  ]
  assert saved and max(saved) >= epoch, saved
  assert f'saved at epoch {max(saved)}; rerun the same command to resume' in done.stderr
  assert not (stopped / 'summary.json').exists()

  resumed = cross_validate(stopped, *_LONG)  # asserts exit 0
  assert f'resuming from epoch {max(saved)}' in resumed.stderr
  whole = tmp_path / 'whole'
  cross_validate(whole, *_LONG)
  a = io.read_json(stopped / 'summary.json')
  b = io.read_json(whole / 'summary.json')
  for name, entry in a['metrics'].items():
    assert entry['values'] == pytest.approx(b['metrics'][name]['values']), name
  ma, mb = (io.read_json(w / 'iter_00' / 'metrics.json') for w in (stopped, whole))
  assert ma['selected_epoch'] == mb['selected_epoch']
  np.testing.assert_allclose(ma['test_scores'], mb['test_scores'], rtol=1e-5)


def test_ctrl_c_saves_and_exits_130(tmp_path):
  workdir = tmp_path / 'run'
  done = _stop_at(workdir, signal.SIGINT, 10)
  assert done.returncode == 130, done.stderr[-3000:]
  assert 'rerun the same command to resume' in done.stderr
  assert 'Traceback' not in done.stderr


# -- the data's identity ------------------------------------------------------------------------


def _png_folder(root, n_normal=20, n_abnormal=10):
  from uadjax.data import phantoms

  images, labels, _, _ = phantoms.make_phantoms(n_normal, n_abnormal, 32, 0)
  for k, (x, y) in enumerate(zip(images, labels, strict=True)):
    folder = root / ('abnormal' if y else 'normal')
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((x[..., 0] * 255).astype(np.uint8)).save(folder / f'{k:03d}.png')
  return root


def _folder_config(root):
  return make_config(
    'configs/headct/cae.py:tiny',
    **{
      'data.source': 'class_folders',
      'data.root': str(root),
      'cv.iterations': '0',
      'train.epochs': 2,
    },
  )


def test_a_rerun_over_changed_data_is_refused_naming_the_files(tmp_path):
  root = _png_folder(tmp_path / 'data')
  workdir = tmp_path / 'run'
  protocol_lib.run(_folder_config(root), str(workdir))
  recorded = io.read_json(workdir / 'config.json')['data_fingerprint']
  assert recorded['n_images'] == 30

  # A finished run reruns as 'already done' over the same data ...
  protocol_lib.run(_folder_config(root), str(workdir))
  # ... and is refused over changed data, with what changed named.
  first, second = sorted(os.listdir(root / 'normal'))[:2]
  pixels = np.asarray(Image.open(root / 'normal' / second)).copy()
  pixels[:4] = 255
  Image.fromarray(pixels).save(root / 'normal' / second)
  shutil.copy(root / 'normal' / first, root / 'normal' / 'added.png')
  with pytest.raises(config_lib.ConfigError) as e:
    protocol_lib.run(_folder_config(root), str(workdir))
  message = str(e.value)
  assert 'trained on other data' in message
  assert '1 images added (normal/added.png)' in message
  assert f'1 with other pixels (normal/{second})' in message


def test_the_study_row_only_beside_the_study_data(tmp_path):
  from uadjax.reports import tables

  root = _png_folder(tmp_path / 'data')
  workdir = tmp_path / 'run'
  protocol_lib.run(_folder_config(root), str(workdir))
  summary = (workdir / 'summary.md').read_text()
  assert 'CAE (study)' not in summary
  assert "not the study's head-CT set" in summary
  study = make_config('configs/headct/cae.py:tiny')
  assert tables.study_row_for(study, {'sha256': fingerprint.STUDY_HEAD_CT_SHA256}) == 'cae'
  assert tables.study_row_for(study, {'sha256': 'another set'}) is None
  assert tables.study_row_for(study, None) == 'cae'  # runs written before fingerprints

  # The result files are readable by colleagues, as the process umask allows.
  mask = os.umask(0)
  os.umask(mask)
  for path in ('config.json', 'summary.json', 'summary.md', 'iter_00/metrics.json'):
    mode = stat.S_IMODE(os.stat(workdir / path).st_mode)
    assert mode == 0o666 & ~mask, (path, oct(mode))


@requires_head_ct
def test_the_study_fingerprint_is_that_of_the_shared_head_ct():
  from uadjax import data

  config = make_config('configs/headct/cae.py:tiny', **{'data.root': str(HEAD_CT)})
  recorded = fingerprint.fingerprint(data.load(config.data), config.data)
  assert recorded['n_images'] == 200
  assert fingerprint.is_study_data(recorded)


def test_too_few_abnormal_validation_images_are_warned_about(monkeypatch):
  from uadjax.data.splits import Split

  warnings = []
  monkeypatch.setattr(setup_lib.logging, 'warning', lambda msg, *args: warnings.append(msg % args))
  labels = np.array([0, 0, 0, 0, 1, 1, 1])
  split = Split(3, 0, 0, np.array([0, 1]), np.array([2, 4]), np.array([3, 5, 6]))
  protocol_lib.warn_small_classes([split], labels)
  assert warnings == [
    'Iteration 3: its validation set has 1 abnormal and 1 normal images; the threshold and '
    'F1 need at least 2 and 1.'
  ]
