"""The intensity baseline through the protocol, the report and predict."""

from __future__ import annotations

import os

from tests.helpers import phantom_pngs
from uadjax import io
from uadjax import protocol as protocol_lib


def test_the_intensity_baseline_runs_through_the_protocol_the_report_and_predict(tmp_path):
  from configs.headct import intensity
  from uadjax import predict
  from uadjax.reports import write_report

  config = intensity.get_config('tiny,phantoms')
  workdir = tmp_path / 'run'
  summary = protocol_lib.run(config, str(workdir))
  # Phantom lesions are brighter than the brain: a band above the brain's intensities finds
  # them.
  assert summary['metrics']['auc']['mean'] > 0.7
  metrics = io.read_json(workdir / 'iter_00' / 'metrics.json')
  # Fitted, not trained: no epoch; the band kept is one of the candidates, chosen on validation.
  assert metrics['selected_epoch'] is None
  assert metrics['validation']['candidate'] == [
    f'percentile {q:g}' for q in config.task.percentiles
  ]
  assert metrics['selected_candidate'] in metrics['validation']['candidate']
  assert os.path.exists(write_report(str(workdir)))
  folder = phantom_pngs(tmp_path / 'images')
  result = predict.predict(str(workdir), str(folder), str(tmp_path / 'out'))
  assert result['n_images'] == 2 and result['n_errors'] == 0


def test_a_checkpoint_of_the_epoch_counting_baseline_still_restores(tmp_path):
  # Before it was a fitted family, the baseline's checkpoints also held its histogram under
  # batch_stats (and an epoch): they restore, and score as saved.
  import shutil

  import numpy as np

  from configs.headct import intensity
  from uadjax import inference
  from uadjax.run import checkpoint

  workdir = tmp_path / 'run'
  protocol_lib.run(intensity.get_config('tiny,phantoms'), str(workdir))
  images = np.random.default_rng(0).uniform(size=(3, 32, 32, 1)).astype(np.float32)
  before = inference.load_models(str(workdir), [0])[0].score(images)[0]
  best = workdir / 'iter_00' / 'checkpoints' / 'best'
  saved = checkpoint.restore(str(best))
  old = {
    **saved,
    'batch_stats': {'histogram': np.ones(100, np.float32)},
    'epoch': np.int32(3),
  }
  shutil.rmtree(best)
  checkpoint.save(str(best), old)
  (model,) = inference.load_models(str(workdir), [0])
  assert model.epoch == 3
  np.testing.assert_array_equal(model.score(images)[0], before)
