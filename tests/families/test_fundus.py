"""The fundus experiments end to end: both configs on a synthetic class-folder set, the
two-channel sample grid, and DRIMDB's layout when it is present (the preprocessing modes, the
hold-out split and the classifier task are in tests/data and tests/train)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from configs.fundus import densenet as densenet_config
from configs.fundus import fanogan as fanogan_config
from tests.helpers import SHARED_DATA, fundus_like
from uadjax import inference, predict
from uadjax import protocol as protocol_lib
from uadjax.data import readers
from uadjax.evaluation import cam
from uadjax.families.fanogan import phase as fanogan_phase
from uadjax.reports import write_report

DRIMDB = SHARED_DATA / 'drimdb'
requires_drimdb = pytest.mark.skipif(
  not (DRIMDB / 'Good').is_dir(),
  reason=f'DRIMDB is not at {DRIMDB} (a fresh clone has no ../shared/data)',
)


def test_two_channel_sample_grid_is_red_and_green(tmp_path):
  x = np.zeros((4, 8, 8, 2), np.float32)
  x[..., 0] = 1.0
  path = fanogan_phase.write_grid(str(tmp_path / 'grid.png'), x)
  with Image.open(path) as im:
    assert im.mode == 'RGB'
    pixel = np.asarray(im)[3, 3]
  assert pixel.tolist() == [255, 0, 0]


def _run(config, workdir):
  summary = protocol_lib.run(config, str(workdir))
  write_report(str(workdir))
  return summary


def test_densenet_tiny_end_to_end_with_cams(tmp_path, monkeypatch):
  root = fundus_like(tmp_path / 'data')
  config = densenet_config.get_config('tiny')
  config.data.root = str(root)
  summary = _run(config, tmp_path / 'run')
  assert summary['model'] == 'densenet' and summary['n_iterations'] == 1
  assert summary['extra_test']['classes'] == ['Outlier']
  result = json.loads((tmp_path / 'run' / 'iter_00' / 'metrics.json').read_text())
  # Stratified 60/20/20 of 20 good and 10 bad; the outliers only in the extra test.
  assert (result['n_train'], result['n_val'], result['n_test']) == (18, 6, 6)
  assert result['threshold'] == {'method': 'fixed', 'value': 0.5}
  assert len(result['extra_test']['scores']) == 4
  text = (tmp_path / 'run' / 'summary.md').read_text()
  assert '| DenseNet121 (study) | 0.86 | 0.75 | 0.66 | 0.63 | 0.64 | 0.80 |' in text
  assert 'trained from scratch' in text and 'Test-only class Outlier' in text
  report = tmp_path / 'run' / 'report'
  assert (report / 'cams.png').is_file() and (report / 'extremes.png').is_file()
  for method in cam.METHODS:
    assert len(list((report / 'cams' / method).glob('*.png'))) == 2, method

  # predict's overlays on a classifier run show its Grad-CAM (the score map of a classifier is
  # empty), the same maps IterationModel.class_maps gives.
  from uadjax.reports import images as image_figures

  drawn = {}
  monkeypatch.setattr(
    image_figures,
    'save_overlay',
    lambda image, m, path, title, map_name: drawn.setdefault(path, (m, map_name)),
  )
  out = predict.predict(str(tmp_path / 'run'), str(root / 'Bad'), str(tmp_path / 'pred'))
  assert out['n_images'] == 10 and len(drawn) == 10
  model = inference.load_models(str(tmp_path / 'run'))[0]
  bad = np.stack(
    [
      readers.read_frames(str(p), 32, readers.BRAIN_WINDOW, 'rgb')[0]
      for p in sorted((root / 'Bad').iterdir())
    ]
  )
  maps = model.class_maps(bad)
  assert maps.shape == (10, 32, 32) and 0.0 <= maps.min() and maps.max() <= 1.0 + 1e-6
  assert {name for _, name in drawn.values()} == {'Grad-CAM, class 1'}
  assert max(float(np.max(m)) for m, _ in drawn.values()) > 0.0
  np.testing.assert_allclose(
    sorted(float(np.sum(m)) for m, _ in drawn.values()),
    sorted(float(np.sum(m)) for m in maps),
    rtol=1e-4,
    atol=1e-5,
  )


def test_fanogan_fundus_tiny_end_to_end(tmp_path):
  root = fundus_like(tmp_path / 'data')
  config = fanogan_config.get_config('tiny')
  config.data.root = str(root)
  summary = _run(config, tmp_path / 'run')
  assert summary['model'] == 'fanogan' and 'extra_test' in summary
  result = json.loads((tmp_path / 'run' / 'iter_00' / 'metrics.json').read_text())
  # 60 % of good trains; validation and test: 20 % of good + half of bad each.
  assert (result['n_train'], result['n_val'], result['n_test']) == (12, 4 + 5, 4 + 5)
  assert set(result['test_score_parts']) == {'image', 'feature'}
  text = (tmp_path / 'run' / 'summary.md').read_text()
  assert '(study)' not in text  # the study has no fundus f-AnoGAN row
  with Image.open(tmp_path / 'run' / 'gan' / 'iter_00' / 'samples' / 'selected.png') as im:
    assert im.mode == 'RGB'
  assert (tmp_path / 'run' / 'report' / 'extremes.png').is_file()


@requires_drimdb
def test_drimdb_loads_with_its_classes_and_split():
  config = densenet_config.get_config('tiny')
  protocol = protocol_lib.Protocol(config)
  labels = protocol.dataset.labels
  assert np.bincount(labels).tolist() == [125, 69, 22]
  s = protocol.splits[0]
  assert np.bincount(labels[s.train]).tolist() == [75, 41]
  assert np.bincount(labels[s.test], minlength=3).tolist()[2] == 0
