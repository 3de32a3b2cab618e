"""Faults a user meets: bad config fields, a busy workdir, SIGTERM / Ctrl-C, changed data,
another data set than the study's, and the permissions of the result files."""

from __future__ import annotations

import json
import os
import random
import re
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
  python,
  requires_head_ct,
  run,
)
from uadjax import config as config_lib
from uadjax import io
from uadjax import protocol as protocol_lib
from uadjax.protocol import setup as setup_lib
from uadjax.run import compilation_cache, fingerprint, lock

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
  done = run(cross_validate_cmd(workdir, '--config.cv.threshold=bogus'), expect=2, timeout=300)
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


# -- diverged training ------------------------------------------------------------------------


def test_divergence_is_a_non_finite_or_runaway_loss():
  from uadjax.protocol import divergence

  history = {'epoch': [1, 2, 3], 'train_loss': [0.5, 0.4, 0.3], 'start_loss': [0.7, 0.5, 0.4]}
  assert divergence.check(history, 0) is None
  nan = {**history, 'train_loss': [0.5, float('nan'), 0.3]}
  assert divergence.check(nan, 0) == {
    'epoch': 2,
    'loss': pytest.approx(float('nan'), nan_ok=True),
    'reason': 'the training loss is not finite',
  }
  assert divergence.check(nan, 2) is None  # only the epochs after the call's first
  runaway = {**history, 'train_loss': [0.5, 2e6, 0.3]}  # > 1e6 x max(1, 0.7)
  found = divergence.check(runaway, 0)
  assert found['epoch'] == 2 and 'exceeds 1e+06 x the untrained loss (0.7)' in found['reason']
  assert divergence.check({**history, 'train_loss': [0.5, 9e5, 0.3]}, 0) is None
  # A loss that starts near 0 (a critic's) may grow to a few units.
  assert divergence.check({**history, 'start_loss': [1e-3] * 3, 'train_loss': [5.0] * 3}, 0) is None
  # A resumed older run without the untrained loss: only a non-finite loss is told.
  older = {'epoch': [1, 2], 'train_loss': [0.5, 1e30]}
  assert divergence.check(older, 0) is None
  assert divergence.check({**older, 'train_loss': [0.5, float('inf')]}, 0)['epoch'] == 2


def _nan_loss_at(monkeypatch, epoch: int, nth: int = 0):
  """The logs of the compiled call that trains `epoch` come back with a NaN training loss at
  that epoch for the `nth` iteration of its group, as a diverged call's would (the programs
  stay as they are)."""
  from uadjax.protocol import progress

  append = progress.append_history
  seen = []

  def append_history(history, log, first_epoch):
    losses = np.asarray(log['train_loss'])
    if first_epoch < epoch <= first_epoch + losses.size:
      seen.append(first_epoch)
      if len(seen) == nth + 1:
        corrupt = losses.astype(np.float32).reshape(-1)
        corrupt[epoch - first_epoch - 1] = np.nan
        log = {**log, 'train_loss': corrupt.reshape(losses.shape)}
    append(history, log, first_epoch)

  monkeypatch.setattr(progress, 'append_history', append_history)


@pytest.mark.parametrize('parallel', [True, False], ids=['fold-parallel', 'sequential'])
def test_a_diverged_iteration_is_stopped_marked_and_the_others_go_on(
  parallel, monkeypatch, tmp_path
):
  _nan_loss_at(monkeypatch, epoch=2)
  config = make_config(TINY_CAE, **{'cv.parallel': parallel})
  workdir = tmp_path / 'run'
  summary = protocol_lib.run(config, str(workdir))

  record = io.read_json(workdir / 'iter_00' / 'metrics.json')
  assert record['diverged']['epoch'] == 2 and np.isnan(record['diverged']['loss'])
  assert 'Iteration 0 diverged at epoch 2' in record['diverged']['message']
  assert record['history']['epoch'] == [1, 2]
  # Stopped at once: nothing trained or saved after the call that diverged.
  saved = os.listdir(workdir / 'iter_00' / 'checkpoints' / 'latest')
  assert not any(e.isdigit() and int(e) > 2 for e in saved), saved
  assert not (workdir / 'iter_00' / 'checkpoints' / 'best').exists()
  # The other iteration trained to the end and is in the summary alone.
  other = io.read_json(workdir / 'iter_01' / 'metrics.json')
  assert 'diverged' not in other and other['history']['epoch'][-1] == config.train.epochs
  assert summary['iterations'] == [1]
  assert summary['diverged'] == [
    {
      'iteration': 0,
      'phase': '',
      'epoch': 2,
      'loss': pytest.approx(float('nan'), nan_ok=True),
      'reason': 'the training loss is not finite',
    }
  ]
  markdown = (workdir / 'summary.md').read_text()
  assert '**1 iteration diverged**' in markdown
  assert '| 0 | scored | 2 | nan | the training loss is not finite |' in markdown

  # Readers see the finished iteration only; a rerun trains nothing and says so again.
  from uadjax import inference

  assert list(inference.finished_iterations(str(workdir))) == [1]
  assert list(inference.diverged_iterations(str(workdir))) == [0]
  monkeypatch.undo()
  again = protocol_lib.run(config, str(workdir))
  assert [d['iteration'] for d in again['diverged']] == [0] and again['iterations'] == [1]


def test_a_diverged_gan_phase_stops_the_iteration_before_the_encoder(monkeypatch, tmp_path):
  # f-AnoGAN's GAN phase goes through the same engine and groups: its divergence stops the
  # iteration for the whole run.
  _nan_loss_at(monkeypatch, epoch=2)
  config = make_config('configs/headct/fanogan.py:tiny,phantoms', **{'cv.iterations': '0'})
  workdir = tmp_path / 'run'
  summary = protocol_lib.run(config, str(workdir))
  assert summary['diverged'][0]['phase'] == 'gan' and summary['diverged'][0]['epoch'] == 2
  assert summary['n_iterations'] == 0
  assert not (workdir / 'gan' / 'iter_00' / 'gan.json').exists()
  assert not (workdir / 'iter_00' / 'checkpoints').exists(), 'the encoder must not train'
  assert 'Every iteration diverged' in (workdir / 'summary.md').read_text()


def test_non_finite_scores_of_the_selected_model_are_a_divergence(monkeypatch, tmp_path):
  from uadjax.protocol import evaluate

  score_all = evaluate.score_all

  def nan_scores(engine, variables, images, indices):
    scores, maps = score_all(engine, variables, images, indices)
    return np.full_like(scores, np.nan), maps

  monkeypatch.setattr(evaluate, 'score_all', nan_scores)
  config = make_config(TINY_CAE, **{'cv.iterations': '0'})
  workdir = tmp_path / 'run'
  summary = protocol_lib.run(config, str(workdir))
  (found,) = summary['diverged']
  assert 'gives scores that are not finite' in found['reason']
  assert 'validation scores' in found['reason'] and 'test scores' in found['reason']
  assert 'threshold' not in io.read_json(workdir / 'iter_00' / 'metrics.json')


def test_a_learning_rate_that_diverges_exits_3_with_the_summary_saying_so(tmp_path):
  workdir = tmp_path / 'run'
  done = run(
    cross_validate_cmd(workdir, '--config.optimizer.learning_rate=1e4'), expect=3, timeout=600
  )
  assert 'Traceback' not in done.stderr
  assert 'Iteration 0 diverged at epoch' in done.stderr
  assert 'diverged**' in done.stdout  # the printed summary
  for i in (0, 1):
    assert io.read_json(workdir / f'iter_{i:02d}' / 'metrics.json')['diverged']['loss'] > 1e6


# -- a workdir that cannot be written ---------------------------------------------------------

# Runs the entry point with one write made to fail: mkstemp (the write probe) raising EROFS,
# as on a read-only file system (root passes permission bits, so a chmod'ed folder cannot
# show it).
_READ_ONLY = """
import errno, runpy, sys, tempfile
def refuse(*args, **kwargs):
  raise OSError(errno.EROFS, 'Read-only file system', kwargs.get('dir'))
tempfile.mkstemp = refuse
sys.argv = ['cross_validate', *sys.argv[1:]]
runpy.run_module('experiments.cross_validate', run_name='__main__')
"""


def test_a_read_only_workdir_is_refused_before_the_data_is_read(monkeypatch, tmp_path):
  import errno
  import tempfile

  from uadjax import data
  from uadjax.run import storage

  def refuse(*args, **kwargs):
    raise OSError(errno.EROFS, 'Read-only file system', kwargs.get('dir'))

  def no_read(*args, **kwargs):
    raise AssertionError('the data was read before the workdir was checked')

  monkeypatch.setattr(tempfile, 'mkstemp', refuse)
  monkeypatch.setattr(data, 'load', no_read)
  with pytest.raises(storage.WorkdirError, match='cannot be written.*read-only file system'):
    protocol_lib.run(make_config(TINY_CAE), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_the_entry_point_exits_2_in_one_line_on_a_read_only_workdir(tmp_path):
  workdir = tmp_path / 'run'
  done = run(
    [sys.executable, '-c', _READ_ONLY, f'--config={TINY_CAE}', f'--workdir={workdir}'],
    expect=2,
    timeout=300,
  )
  assert 'Traceback' not in done.stderr
  (line,) = [s for s in done.stderr.splitlines() if s.startswith('error:')]
  assert f'{workdir}: cannot be written (it is on a read-only file system' in line


def _with_file_size_limit(kib: int, cmd: list[str]) -> list[str]:
  """`cmd` under a file-size limit (RLIMIT_FSIZE, set by the shell's ulimit before exec): a full
  disk without root, each file cut at `kib` KiB (EFBIG, where a full disk gives ENOSPC).
  SIGXFSZ is ignored, so that the write fails instead of the process being killed."""
  return ['bash', '-c', f'trap "" XFSZ; ulimit -f {kib}; exec "$@"', 'bash', *cmd]


def test_a_full_disk_during_a_checkpoint_exits_2_in_one_line_and_the_rerun_resumes(tmp_path):
  flags = ('--config.cv.iterations=0', '--noreport')
  workdir = tmp_path / 'run'
  done = subprocess.run(
    _with_file_size_limit(64, cross_validate_cmd(workdir, *flags)),
    cwd=REPO,
    # The limit cuts every file: the session's compilation cache is left out of it.
    env={**env_without_gpu(), compilation_cache.ENV: 'off'},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 2, done.stderr[-3000:]
  assert 'Traceback' not in done.stderr, done.stderr[-3000:]
  (line,) = [s for s in done.stderr.splitlines() if s.startswith('error:')]
  # Which save first crosses the limit varies between runs (Orbax's OCDBT files do not grow
  # by the same amount each save): the epoch is not pinned, the message's shape is.
  saved = r'saving the (latest|best) checkpoint of epoch \d+ failed: a file would exceed'
  assert re.search(f'{re.escape(str(workdir))}: {saved}', line), line
  assert 'free there' in line and 'rerunning the same command resumes' in line
  assert not (workdir / 'summary.json').exists()

  cross_validate(workdir, *flags)  # space freed: asserts exit 0
  whole = tmp_path / 'whole'
  cross_validate(whole, *flags)
  a, b = (io.read_json(w / 'summary.json') for w in (workdir, whole))
  for name, entry in a['metrics'].items():
    assert entry['values'] == pytest.approx(b['metrics'][name]['values']), name


def test_no_space_in_any_write_of_the_workdir_is_one_error_naming_it(monkeypatch, tmp_path):
  import errno

  from uadjax.run import storage

  def full(path, obj):
    raise OSError(errno.ENOSPC, 'No space left on device', str(path))

  monkeypatch.setattr(io, 'write_json', full)
  workdir = tmp_path / 'run'
  with pytest.raises(storage.WorkdirError) as e:
    protocol_lib.run(make_config(TINY_CAE), str(workdir))
  message = str(e.value)
  assert message.startswith(f'{workdir}: writing failed: no space left on its file system')
  assert f'({workdir}/config.json)' in message and 'free there' in message


def test_orbax_storage_errors_become_os_errors_naming_the_save(tmp_path):
  import errno

  from uadjax.run import checkpoint, storage

  path = str(tmp_path / 'run' / 'iter_00' / 'checkpoints' / 'best')
  text = f'RESOURCE_EXHAUSTED: Error writing local file "{path}/manifest.ocdbt": Failed'
  with pytest.raises(storage.WorkdirError) as e:
    with storage.reported(str(tmp_path / 'run')), checkpoint.storage_errors('saving X', path):
      raise ValueError(text)
  assert 'saving X failed: no space left on its file system' in str(e.value)
  assert f'({path}/manifest.ocdbt)' in str(e.value)
  assert isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == errno.ENOSPC
  # Any other error of Orbax is left as it is.
  with pytest.raises(ValueError, match='shape mismatch'):
    with checkpoint.storage_errors('saving X', path):
      raise ValueError('shape mismatch')


# -- non-finite pixels ----------------------------------------------------------------------


def _float_tiffs(root, bad: dict):
  rng = np.random.default_rng(0)
  for cls, n in (('normal', 20), ('abnormal', 10)):
    (root / cls).mkdir(parents=True)
    for k in range(n):
      pixels = rng.random((40, 40)).astype(np.float32)
      pixels = bad.get(f'{cls}/{k:03d}.tif', lambda x: x)(pixels)
      Image.fromarray(pixels, 'F').save(root / cls / f'{k:03d}.tif')
  return root


def _nan_block(x):
  x[5:15, 5:15] = np.nan
  return x


def test_images_with_non_finite_pixels_are_refused_naming_each(tmp_path):
  from uadjax import data

  root = _float_tiffs(
    tmp_path / 'data',
    {'normal/003.tif': _nan_block, 'abnormal/002.tif': lambda x: np.full_like(x, np.inf)},
  )
  config = _folder_config(root)
  with pytest.raises(data.DataError) as e:
    data.load(config.data)
  message = str(e.value)
  assert '2 image files with NaN or infinite pixels' in message
  assert f'{root}/normal/003.tif: 100 NaN of its 1600 pixels' in message
  assert f'{root}/abnormal/002.tif: 1600 infinite of its 1600 pixels' in message
  assert 'Identical images' not in message
  # Clean float TIFFs load.
  clean = _float_tiffs(tmp_path / 'clean', {})
  assert data.load(_folder_config(clean).data).images.shape[0] == 30


def test_predict_names_a_file_with_nan_pixels_in_its_error_row(tiny_run, tmp_path):
  from uadjax import predict

  images = tmp_path / 'images'
  images.mkdir()
  Image.fromarray(_nan_block(np.ones((40, 40), np.float32)), 'F').save(images / 'nan.tif')
  Image.fromarray(np.full((40, 40), 0.5, np.float32) + np.eye(40, dtype=np.float32), 'F').save(
    images / 'ok.tif'
  )
  result = predict.predict(str(tiny_run), str(images), str(tmp_path / 'out'), overlays=False)
  assert result['n_errors'] == 1 and result['n_images'] == 1
  rows = (tmp_path / 'out' / 'predictions.csv').read_text()
  assert 'nan.tif: 100 NaN of its 1600 pixels' in rows


# -- readers of a run check its config --------------------------------------------------------


@pytest.mark.parametrize('entry', ['predict', 'report', 'compare', 'rescore'])
def test_readers_of_a_run_with_an_unknown_model_exit_2_with_the_config_check(
  entry, tiny_run, tmp_path
):
  run = tmp_path / 'run'
  shutil.copytree(tiny_run, run)
  saved = io.read_json(run / 'config.json')
  saved['model_name'] = 'vae'
  io.write_json(run / 'config.json', saved)
  args = {
    'predict': [f'--run={run}', f'--images={run}', f'--out={tmp_path / "p"}'],
    'report': [f'--workdir={run}'],
    'compare': [str(run), f'--out={tmp_path / "c"}'],
    'rescore': [f'--run={run}'],
  }[entry]
  done = python('-m', f'experiments.{entry}', *args, expect=2)
  assert 'Traceback' not in done.stderr
  assert f"error: {run}/config.json: Invalid config:\n  model_name='vae': expected one of" in (
    done.stderr
  )


def test_predict_gives_no_decision_for_a_score_that_is_not_finite(tiny_run, monkeypatch, tmp_path):
  # NaN compares false against the threshold: the image would have been called normal.
  from uadjax import inference, predict

  score = inference.IterationModel.score

  def nan_first(self, images):
    scores, maps = score(self, images)
    scores = scores.copy()
    scores[0] = np.nan
    return scores, maps

  monkeypatch.setattr(inference.IterationModel, 'score', nan_first)
  images = tmp_path / 'images'
  images.mkdir()
  for k in range(2):
    pixels = np.random.default_rng(k).integers(0, 255, (40, 40), dtype=np.uint8)
    Image.fromarray(pixels).save(images / f'{k}.png')
  result = predict.predict(str(tiny_run), str(images), str(tmp_path / 'out'), overlays=False)
  first, second = sorted(result['rows'], key=lambda r: r['file'])
  assert first['decision'] == '' and first['error'].startswith('score not finite (iteration 00')
  assert second['decision'] in ('normal', 'abnormal') and second['error'] == ''
  assert result['n_errors'] == 1


def test_rescore_names_the_variant_and_iteration_whose_scores_are_not_finite():
  from uadjax import rescore

  results = {
    'study': {'iterations': [0], 'val_auc': [0.7], 'test_auc': [0.6]},
    'ssim': {
      'iterations': [0],
      'val_auc': [float('nan')],
      'test_auc': [0.5],
      'not_finite': ['iteration 0 val'],
    },
  }
  text = rescore.markdown(results)
  assert 'ssim: scores not finite (iteration 0 val): its AUC is nan.' in text
  assert 'study: scores not finite' not in text


def test_only_the_storage_errors_of_the_folder_become_one_line(tmp_path):
  import errno

  from uadjax.run import storage

  folder = str(tmp_path / 'run')
  # A write that finds the disk full after its file was opened names no path.
  with pytest.raises(storage.WorkdirError, match=f'^{folder}: writing failed: no space left'):
    with storage.reported(folder):
      raise OSError(errno.ENOSPC, 'No space left on device')
  with pytest.raises(storage.WorkdirError, match='permission denied'):
    with storage.reported(folder):
      raise PermissionError(errno.EACCES, 'Permission denied', f'{folder}/iter_00/history.json')
  # Elsewhere, or not the storage's fault: left as it is.
  with pytest.raises(FileNotFoundError):
    with storage.reported(folder):
      raise FileNotFoundError(errno.ENOENT, 'No such file', str(tmp_path / 'data' / 'x.png'))
  with pytest.raises(OSError, match='Too many open files'):
    with storage.reported(folder):
      raise OSError(errno.EMFILE, 'Too many open files')


def test_the_echoes_of_a_failed_save_are_not_printed(monkeypatch):
  # TensorStore's callbacks of writes still in flight after a failed save raise 'Event loop
  # is closed', printed as unraisable exceptions after the one-line error; they are dropped.
  import asyncio
  import types

  from uadjax.run import checkpoint

  printed = []
  monkeypatch.setattr(sys, 'unraisablehook', lambda args: printed.append(str(args.exc_value)))
  monkeypatch.setattr(sys, 'excepthook', sys.__excepthook__)
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as e:
    echo = e
  try:
    raise RuntimeError('something else')
  except RuntimeError as e:
    other = e

  def unraisable(error):
    return types.SimpleNamespace(
      exc_type=type(error), exc_value=error, exc_traceback=error.__traceback__
    )

  with checkpoint.storage_errors('saving X', '/nowhere'):
    pass
  sys.unraisablehook(unraisable(echo))
  sys.unraisablehook(unraisable(other))
  assert printed == ['something else']
