"""The CAE end to end with the quality levers: score variants, the cosine schedule, weight decay."""

from __future__ import annotations

import ml_collections
import numpy as np

from uadjax import io
from uadjax import protocol as protocol_lib


def test_score_switches_run_through_the_protocol(tmp_path):
  from tests.helpers import TINY_CAE, make_config

  config = make_config(
    TINY_CAE,
    **{'task': ml_collections.ConfigDict(dict(mask='brain', reduction='topk', topk=0.1, blur=1.0))},
  )
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_epochs = 1
  config.optimizer.weight_decay = 1e-4
  summary = protocol_lib.run(config, str(tmp_path / 'run'))
  assert 0.0 <= summary['metrics']['auc']['mean'] <= 1.0
  metrics = io.read_json(tmp_path / 'run' / 'iter_00' / 'metrics.json')
  assert all(np.isfinite(metrics['test_scores']))

  # A rescore variant names its score in full: 'own' repeats the run's switches and gives the
  # run's test AUC; 'study' ({}) is the study's image mean, not the run's score.
  from uadjax import rescore

  own = dict(mask='brain', reduction='topk', topk=0.1, blur=1.0)
  results = rescore.rescore(str(tmp_path / 'run'), {'own': own, 'study': {}})
  for k, i in enumerate(results['own']['iterations']):
    m = io.read_json(tmp_path / 'run' / f'iter_{i:02d}' / 'metrics.json')
    assert abs(results['own']['test_auc'][k] - m['test']['auc']) < 1e-6
  assert results['study']['test_auc'] != results['own']['test_auc']
