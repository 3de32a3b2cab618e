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
