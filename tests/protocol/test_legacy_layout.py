"""A run folder written before the package's move to one folder per family still resumes, loads
and scores.

`tests/fixtures/legacy_layout/cae_stopped` was written by the layout before the move (commit
65acb87, `uadjax/models`, `uadjax/train/reconstruction.py`, ...):

  python -m experiments.cross_validate --config=configs/headct/cae.py:tiny,phantoms \\
      --config.cv.iterations=0 --config.cv.parallel=False --config.train.epochs=40 --noreport \\
      --workdir=cae_stopped

stopped by SIGTERM after epoch 14 (its latest checkpoint; the TensorBoard folder and the
earlier checkpoint were removed to keep it small). `cae_whole.json` holds what the same command
gave uninterrupted there: its selected epoch, validation and test scores and threshold.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.helpers import REPO, cross_validate, phantom_pngs
from uadjax import inference, io, predict

FIXTURES = REPO / 'tests' / 'fixtures' / 'legacy_layout'
FLAGS = (
  '--config.cv.iterations=0',
  '--config.cv.parallel=False',
  '--config.train.epochs=40',
  '--noreport',
)


@pytest.fixture(scope='module')
def resumed(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('legacy') / 'cae'
  shutil.copytree(FIXTURES / 'cae_stopped', workdir)
  done = cross_validate(workdir, *FLAGS)  # asserts exit 0
  return workdir, done


def test_a_run_stopped_before_the_move_resumes_to_the_uninterrupted_result(resumed):
  workdir, done = resumed
  assert 'resuming from epoch 14' in done.stderr
  whole = io.read_json(FIXTURES / 'cae_whole.json')
  metrics = io.read_json(workdir / 'iter_00' / 'metrics.json')
  assert metrics['selected_epoch'] == whole['selected_epoch']
  np.testing.assert_allclose(metrics['val_scores'], whole['val_scores'], rtol=1e-5)
  np.testing.assert_allclose(metrics['test_scores'], whole['test_scores'], rtol=1e-5)
  assert metrics['threshold']['value'] == pytest.approx(whole['threshold']['value'], rel=1e-5)


def test_its_checkpoints_load_and_score_new_images(resumed, tmp_path):
  workdir, _ = resumed
  (model,) = inference.load_models(str(workdir))
  assert model.epoch == 14 and np.isfinite(model.threshold)
  out = predict.predict(str(workdir), str(phantom_pngs(tmp_path / 'new')), str(tmp_path / 'out'))
  assert out['n_images'] == 2 and out['n_errors'] == 0
