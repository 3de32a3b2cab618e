"""The pretrained-feature families (fitted, not trained) through the protocol, and their scores."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.helpers import last_json, make_config, phantom_pngs, python, read_events, scalars
from uadjax import families, io
from uadjax import protocol as protocol_lib
from uadjax.data import phantoms

FAMILIES = ('feature_gaussian', 'padim', 'patchcore', 'patch_knn')
# Each family's taps of the other backbone than its recipe's, at 28x28 (a multiple of 14).
OTHER_BACKBONE = {
  'feature_gaussian': ('dinov2_vits14', ('block2',)),
  'padim': ('dinov2_vits14', ('block2', 'block3')),
  'patchcore': ('dinov2_vits14', ('block2',)),
  'patch_knn': ('vgg16', ('relu2_2', 'relu3_3')),
}


def _config(name):
  return make_config(f'configs/headct/{name}.py:tiny,phantoms')


@pytest.fixture(scope='module')
def fitted_runs(tmp_path_factory):
  """{family: workdir} of each family's tiny protocol on the phantoms."""
  root = tmp_path_factory.mktemp('fitted')
  runs = {}
  for name in FAMILIES:
    runs[name] = root / name
    protocol_lib.run(_config(name), str(runs[name]))
  return runs


@pytest.mark.parametrize('name', FAMILIES)
def test_each_feature_family_runs_the_protocol_without_epochs(fitted_runs, name):
  workdir = fitted_runs[name]
  summary = io.read_json(workdir / 'summary.json')
  assert summary['n_iterations'] == 2
  for i in (0, 1):
    metrics = io.read_json(workdir / f'iter_{i:02d}' / 'metrics.json')
    assert metrics['selected_epoch'] is None and metrics['history']['epoch'] == []
    assert metrics['selected_candidate'] in metrics['validation']['candidate']
    assert len(metrics['validation']['auc']) == len(metrics['validation']['candidate'])
    assert np.all(np.isfinite(metrics['test_scores']))
    # The checkpoint holds the fitted statistics, not the backbone's weights.
    assert not (workdir / f'iter_{i:02d}' / 'checkpoints' / 'latest').exists()
  from uadjax.run import checkpoint

  saved = checkpoint.restore(str(workdir / 'iter_00' / 'checkpoints' / 'best'))
  assert 'backbone' not in saved and 'epoch' not in saved and 'params' in saved


@pytest.mark.parametrize('name', FAMILIES)
def test_a_fitted_run_shows_its_candidates_and_maps_in_tensorboard(fitted_runs, name):
  workdir = fitted_runs[name]
  for i in (0, 1):
    validation = io.read_json(workdir / f'iter_{i:02d}' / 'metrics.json')['validation']
    events = read_events(workdir / 'tensorboard' / f'iter_{i:02d}')
    steps, aucs = scalars(events, 'validation/auc')
    assert steps == list(range(len(validation['candidate'])))
    np.testing.assert_allclose(aucs, validation['auc'], rtol=1e-6)
    assert [e.step for e in events.Images('images/anomaly_map')] == [0]


def _features_and_scores(config):
  """A task's features, fit and scores of a few phantoms, from features and from images."""
  task = families.make_task(config)
  size = int(config.data.image_size)
  images, _, _, _ = phantoms.make_phantoms(6, 2, size, 3)
  images = np.asarray(images, np.float32)
  frozen = task.frozen_variables()
  features = jax.jit(task.embed)(frozen, images)
  (_, variables), *_ = task.fit(jax.random.PRNGKey(0), jax.tree.map(np.asarray, features))
  variables = {**variables, **frozen}
  from_features = jax.jit(task.score_embedded)(variables, features)
  from_images, maps = jax.jit(task.score)(variables, images)
  return images, from_features, from_images, maps


@pytest.mark.parametrize('name', FAMILIES)
def test_scores_from_features_equal_scores_from_images(name):
  images, from_features, from_images, maps = _features_and_scores(_config(name))
  np.testing.assert_allclose(from_features, from_images, rtol=1e-4, atol=1e-4)
  assert maps.shape == images.shape[:3] and np.all(np.isfinite(maps))


@pytest.mark.parametrize('name', FAMILIES)
def test_every_feature_family_takes_either_backbone(name):
  config = _config(name)
  config.model.backbone, config.model.layers = OTHER_BACKBONE[name]
  config.data.image_size = 28
  if name == 'patchcore':
    config.task.grid = 2  # the ViT's 2x2 token grid at 28x28
  images, from_features, from_images, maps = _features_and_scores(config)
  np.testing.assert_allclose(from_features, from_images, rtol=1e-4, atol=1e-4)
  assert np.all(np.isfinite(from_images)) and maps.shape == images.shape[:3]


def test_the_gaussian_scores_its_own_training_mean_lowest():
  config = _config('feature_gaussian')
  task = families.make_task(config)
  normals, _, _, _ = phantoms.make_phantoms(12, 0, 32, 4)
  lesions, _, _, _ = phantoms.make_phantoms(0, 4, 32, 5)
  frozen = task.frozen_variables()
  features = jax.tree.map(np.asarray, jax.jit(task.embed)(frozen, np.asarray(normals)))
  (_, variables), *_ = task.fit(jax.random.PRNGKey(0), features)
  p = variables['params']
  at_mean = task.score_embedded(variables, {'pooled': p['mean'][None]})
  np.testing.assert_allclose(at_mean, [0.0], atol=1e-3)
  # The maps split the squared distance: each tap's cells' mean share, summed over the taps,
  # is the score squared.
  taps, inside = task.tap_features({**variables, **frozen}, np.asarray(lesions))
  taps = {name: np.asarray(f) for name, f in taps.items()}
  pooled = np.concatenate([f.mean(axis=(1, 2)) for f in taps.values()], -1)  # no mask
  u = (pooled - p['mean']) @ p['precision']
  total, start = 0.0, 0
  for f in taps.values():
    c = slice(start, start + f.shape[-1])
    start += f.shape[-1]
    total += np.einsum('nhwd,nd->nhw', f - p['mean'][c], u[:, c]).mean(axis=(1, 2))
  scores = task.score_embedded(variables, {'pooled': pooled})
  np.testing.assert_allclose(total, np.square(scores), rtol=2e-3)


def test_a_fitted_run_restored_in_a_fresh_process_reproduces_its_test_scores(fitted_runs):
  workdir = fitted_runs['patchcore']
  metrics = io.read_json(workdir / 'iter_01' / 'metrics.json')
  program = f"""
import json, numpy as np
from uadjax import data, inference
config = inference.load_config({str(workdir)!r})
dataset = data.load(config.data)
index = {{name: i for i, name in enumerate(dataset.names)}}
images = dataset.images[[index[n] for n in {metrics['test_names']!r}]]
model = inference.load_models({str(workdir)!r}, [1])[0]
print(json.dumps([float(s) for s in model.score(images)[0]]))
"""
  restored = last_json(python('-c', program))
  np.testing.assert_allclose(restored, metrics['test_scores'], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', ['feature_gaussian', 'patch_knn'])
def test_predict_and_the_report_read_a_fitted_run(fitted_runs, tmp_path, name):
  import shutil

  from pydicom.data import get_testdata_file

  from uadjax import predict
  from uadjax.reports import write_report

  workdir = fitted_runs[name]
  report = write_report(str(workdir))
  text = open(report).read()
  assert 'fitted in one pass (no epochs)' in text and '## Anomaly maps' in text
  folder = phantom_pngs(tmp_path / 'images')
  shutil.copy(get_testdata_file('CT_small.dcm', download=False), folder / 'ct.dcm')
  result = predict.predict(str(workdir), str(folder), str(tmp_path / 'out'))
  assert result['n_images'] == 3 and result['n_errors'] == 0
  assert (tmp_path / 'out' / 'overlays' / 'ct.dcm.png').is_file()


def test_a_fitted_config_has_no_training_fields_and_refuses_a_bad_mask():
  from uadjax import config as config_lib

  config = _config('padim')
  assert 'optimizer' not in config and 'epochs' not in config.train
  config_lib.validate(config)
  config.task.mask = 'skull'
  with pytest.raises(config_lib.ConfigError, match="task.mask='skull'"):
    config_lib.validate(config)


def test_only_the_training_normals_are_fitted_when_a_split_trains_on_abnormals_too(
  monkeypatch, tmp_path
):
  # A hold-out split may put abnormal images in training (the fundus configs' default);
  # the statistics must see the normals only.
  from uadjax.families.feature_gaussian.task import FeatureGaussianTask

  seen = []
  fit = FeatureGaussianTask.fit
  monkeypatch.setattr(
    FeatureGaussianTask,
    'fit',
    lambda self, key, f: seen.append(len(f['pooled'])) or fit(self, key, f),
  )
  config = _config('feature_gaussian')
  config.cv.scheme = 'holdout'
  config.cv.normal_fractions = (0.6, 0.2, 0.2)
  config.cv.abnormal_fractions = (0.4, 0.3, 0.3)
  config.cv.iterations = ''
  protocol = protocol_lib.Protocol(config)
  split = protocol.splits[0]
  labels = protocol.dataset.labels
  assert np.any(labels[split.train] == 1)
  protocol_lib.run(config, str(tmp_path / 'run'))
  assert seen == [int(np.sum(labels[split.train] == 0))]


def test_a_mask_that_leaves_no_patch_is_named():
  task = families.make_task(_config('patchcore'))
  empty = {'patches': np.zeros((2, 4, 8), np.float32), 'inside': np.zeros((2, 4), np.float32)}
  with pytest.raises(ValueError, match='leaves no patch of the training images inside'):
    task.fit(jax.random.PRNGKey(0), empty)
