"""Rescoring a finished run with other score variants."""

from __future__ import annotations

import pytest

from uadjax import io


def test_rescore_gives_the_runs_own_validation_auc_for_the_study_score(tiny_run):
  from uadjax import rescore

  results = rescore.rescore(
    str(tiny_run), {'study': {}, 'brain_top5': {'mask': 'brain', 'reduction': 'topk'}}
  )
  for name in ('study', 'brain_top5'):
    assert results[name]['iterations'] == [0, 1]
  for k, i in enumerate(results['study']['iterations']):
    m = io.read_json(tiny_run / f'iter_{i:02d}' / 'metrics.json')
    at_selection = m['validation']['auc'][m['validation']['epoch'].index(m['selected_epoch'])]
    assert results['study']['val_auc'][k] == pytest.approx(at_selection, abs=1e-6)
    assert results['study']['test_auc'][k] == pytest.approx(m['test']['auc'], abs=1e-6)
  assert '| brain_top5 |' in rescore.markdown(results)
