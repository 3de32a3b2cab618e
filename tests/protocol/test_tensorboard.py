"""TensorBoard event files (`uadjax.protocol.summaries`), read with TensorBoard's own reader."""

from __future__ import annotations

import types

import ml_collections
import numpy as np
import pytest

from tests.helpers import TINY_CAE, make_config, read_events, scalars
from uadjax import config as config_lib
from uadjax import io
from uadjax.protocol import Protocol
from uadjax.protocol.summaries import Summaries
from uadjax.run.layout import RunDir
from uadjax.train.state import learning_rate


def test_tiny_run_has_each_iterations_curves_and_images(tiny_run):
  """The fold-parallel tiny run (two iterations in one group) writes each iteration's own run:
  the loss of every epoch, the validation AUC of every validation (as in history.json), the
  learning rate, and the fixed validation images at each 'latest' checkpoint."""
  config = io.read_json(RunDir(str(tiny_run)).config)
  assert config['cv']['parallel'], 'the tiny run should exercise the fold-parallel group'
  epochs = config['train']['epochs']
  iterations = [int(i) for i in config['cv']['iterations'].split(',')]
  assert len(iterations) > 1
  for i in iterations:
    events = read_events(tiny_run / 'tensorboard' / f'iter_{i:02d}')
    history = io.read_json(RunDir(str(tiny_run)).history(i))
    steps, losses = scalars(events, 'train/loss')
    assert steps == list(range(1, epochs + 1))
    np.testing.assert_allclose(losses, history['train_loss'], rtol=1e-6)
    steps, aucs = scalars(events, 'validation/auc')
    assert steps == history['val_epoch']
    np.testing.assert_allclose(aucs, history['val_auc'], rtol=1e-6)
    assert scalars(events, 'validation/loss')[0] == history['val_epoch']
    steps, rates = scalars(events, 'train/learning_rate')
    assert steps == list(range(1, epochs + 1))
    np.testing.assert_allclose(rates, config['optimizer']['learning_rate'], rtol=1e-6)
    every = config['cv']['checkpoint_every']
    checkpoints = list(range(every, epochs + 1, every))
    for tag in ('images/validation', 'images/reconstruction', 'images/anomaly_map'):
      assert [e.step for e in events.Images(tag)] == checkpoints, tag


def test_phases_write_their_own_runs(fanogan_run):
  """f-AnoGAN: the GAN phase's run (with its selection distance, without images: the critic has
  no map) in tensorboard/gan/, the encoder's with its reconstructions and maps."""
  gan = read_events(fanogan_run / 'tensorboard' / 'gan' / 'iter_00')
  assert {'train/loss', 'validation/auc', 'validation/metric'} <= set(gan.Tags()['scalars'])
  assert not gan.Tags()['images']
  encoder = read_events(fanogan_run / 'tensorboard' / 'iter_00')
  assert {'train/loss', 'validation/auc'} <= set(encoder.Tags()['scalars'])
  assert {'images/reconstruction', 'images/anomaly_map'} <= set(encoder.Tags()['images'])


def fake_logs(first_epoch: int, validations: int, val_every: int, loss: float) -> dict:
  """The logs of one compiled call, as `Group.train` hands them over."""
  val_epochs = first_epoch + val_every * np.arange(1, validations + 1)
  return {
    'train_loss': np.full((validations, val_every), loss, np.float32),
    'val_auc': np.full(validations, 0.5, np.float32),
    'val_loss': np.full(validations, loss, np.float32),
    'epoch': val_epochs.astype(np.int32),
  }


@pytest.fixture(scope='module')
def cosine_protocol():
  """A tiny protocol whose learning rate warms up and decays (nothing trained or compiled)."""
  config = make_config(
    TINY_CAE,
    **{
      'optimizer.schedule': 'cosine',
      'optimizer.warmup_epochs': 2,
      'optimizer.learning_rate': 1e-3,
      'train.epochs': 8,
    },
  )
  return Protocol(config)


def test_resumed_iteration_keeps_one_value_per_epoch(cosine_protocol, tmp_path):
  """A resumed writer purges what an interrupted process wrote after the resumed epoch; the
  learning rate follows the config's schedule."""
  run_dir = RunDir(str(tmp_path))
  first = Summaries(cosine_protocol, run_dir)
  first.log_call([0], [fake_logs(0, 2, 2, loss=1.0)], 0)  # epochs 1-4
  first.log_call([0], [fake_logs(4, 1, 2, loss=1.0)], 4)  # epochs 5-6, then "killed"
  first.close()
  resumed = Summaries(cosine_protocol, run_dir)
  resumed.resume_at(4)  # the latest checkpoint was at epoch 4
  resumed.log_call([0], [fake_logs(4, 2, 2, loss=2.0)], 4)  # epochs 5-8
  resumed.close()
  events = read_events(tmp_path / 'tensorboard' / 'iter_00')
  steps, losses = scalars(events, 'train/loss')
  assert steps == list(range(1, 9))
  assert losses == [1.0] * 4 + [2.0] * 4
  assert scalars(events, 'validation/auc')[0] == [2, 4, 6, 8]
  steps, rates = scalars(events, 'train/learning_rate')
  c = cosine_protocol.config
  per_epoch = cosine_protocol.engine.steps_per_epoch
  schedule = learning_rate(c.optimizer, per_epoch, c.train.epochs)
  np.testing.assert_allclose(rates, [schedule(e * per_epoch) for e in steps], rtol=1e-6)
  assert rates[0] < rates[1] and rates[-1] < rates[2]  # warm-up, then decay


def test_nothing_written_when_off_or_nothing_trains(cosine_protocol, tmp_path):
  """`cv.tensorboard=False` writes nothing; nor does a run with no training call (resumed at
  its end) or a writer given nothing (a fitted family writes its candidates: test_features)."""
  idle = Summaries(cosine_protocol, RunDir(str(tmp_path / 'idle')))
  idle.resume_at(cosine_protocol.config.train.epochs)
  idle.close()
  # A set-up with no engine and no optimiser (a fitted family's), given nothing to log.
  fits = types.SimpleNamespace(config=ml_collections.ConfigDict({'cv': {}, 'train': {}}))
  fitted = Summaries(fits, RunDir(str(tmp_path / 'fits')))
  fitted.resume_at(0)
  fitted.close()
  config = make_config(TINY_CAE, **{'cv.tensorboard': False})
  off = Summaries(Protocol(config), RunDir(str(tmp_path / 'off')))
  off.log_call([0], [fake_logs(0, 2, 2, loss=1.0)], 0)
  off.close()
  assert not list(tmp_path.rglob('*tfevents*'))


def test_tensorboard_flag_is_checked():
  """A config read from JSON (a run's config.json) can hold any value: it must be a bool."""
  fields = make_config(TINY_CAE).to_dict()
  fields['cv']['tensorboard'] = 'yes'
  with pytest.raises(config_lib.ConfigError, match='cv.tensorboard'):
    config_lib.validate(ml_collections.ConfigDict(fields), check_model=False)
