"""The fundus experiments: preprocessing modes, the hold-out split, the classifier task, and both
configs end to end on a synthetic class-folder set (and DRIMDB's layout when it is present)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from configs.fundus import densenet as densenet_config
from configs.fundus import fanogan as fanogan_config
from tests.helpers import SHARED_DATA
from uadjax import cv, fanogan_cv, inference, predict
from uadjax.data import preprocess, readers, splits
from uadjax.evaluation import cam, metrics
from uadjax.models import DenseNet
from uadjax.reports import write_report
from uadjax.train import classifier

DRIMDB = SHARED_DATA / 'drimdb'
requires_drimdb = pytest.mark.skipif(
  not (DRIMDB / 'Good').is_dir(),
  reason=f'DRIMDB is not at {DRIMDB} (a fresh clone has no ../shared/data)',
)


def _fundus_like(root, n_good=20, n_bad=10, n_outlier=4):
  """Good: a bright disc; bad: dim and washed out; outlier: noise. JPEGs with spaces in names."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:90, :120]
  disc = ((yy - 45) ** 2 + (xx - 60) ** 2 < 38**2).astype(float)
  for cls, n in (('Good', n_good), ('Bad', n_bad), ('Outlier', n_outlier)):
    (root / cls).mkdir(parents=True)
    for i in range(n):
      img = np.stack([disc * 200, disc * 90, disc * 5], -1) + rng.normal(0, 10, (90, 120, 3))
      if cls == 'Bad':
        img = img * 0.3 + 90
      if cls == 'Outlier':
        img = rng.uniform(0, 255, (90, 120, 3))
      Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / cls / f'{cls} ({i}).jpg')
  return root


def test_preprocess_modes_give_their_channels_in_unit_range():
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
  rgb = preprocess.preprocess(image, 16, 'rgb')
  rg = preprocess.preprocess(image, 16, 'rg_percentile')
  gray = preprocess.preprocess(image, 16, 'gray')
  assert rgb.shape == (16, 16, 3) and rg.shape == (16, 16, 2) and gray.shape == (16, 16, 1)
  for x in (rgb, rg, gray):
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
  # rgb is the plain /255 resize: the blue channel survives.
  expected = np.asarray(image.resize((16, 16), Image.BILINEAR), np.float32) / 255
  np.testing.assert_allclose(rgb, expected, atol=1e-6)
  with pytest.raises(ValueError, match='data.preprocess'):
    preprocess.preprocess(image, 16, 'hsv')


def test_percentile_rescale_clips_the_top_and_spans_the_range():
  x = np.zeros((100, 100, 2), np.float32)
  x[..., 0] = 100.0
  x[..., 1] = 50.0
  x[0, 0, 0] = 10000.0  # one hot pixel: above the 99.99th percentile of 20000 values
  out = preprocess.percentile_rescale(x)
  assert out[0, 0, 0] == 1.0
  lo, hi = 50.0, np.percentile(x, 99.99)  # one range over both channels
  assert hi < 10000
  np.testing.assert_allclose(out[1, 1], [(100 - lo) / (hi - lo), 0.0], rtol=1e-5)
  assert not preprocess.percentile_rescale(np.ones((4, 4, 2), np.float32)).any()


def test_large_jpeg_is_decoded_at_reduced_scale_with_the_same_result(tmp_path):
  yy, xx = np.mgrid[:1600, :2000]
  img = np.stack([(xx / 2000) * 255, (yy / 1600) * 255, np.full_like(xx, 30.0)], -1)
  path = tmp_path / 'big.jpg'
  Image.fromarray(img.astype(np.uint8)).save(path, quality=95)
  with Image.open(path) as im:
    preprocess.draft(im, 64)
    assert im.size == (250, 200)  # 1/8: the smallest DCT scale with both sides >= 128
  fast = readers.read_image(str(path), 64, mode='rgb')
  with Image.open(path) as im:
    im.load()
    full = preprocess.preprocess(im, 64, 'rgb')
  assert np.abs(fast - full).max() < 0.03


def test_class_folders_label_the_extra_class_two(tmp_path):
  root = _fundus_like(tmp_path / 'd', 5, 3, 2)
  images, labels, names = readers.load_class_folders(
    str(root), ['Good'], ['Bad'], 16, mode='rg_percentile', extra=['Outlier']
  )
  assert images.shape == (10, 16, 16, 2)
  assert labels.tolist() == [0] * 5 + [1] * 3 + [2] * 2
  assert names[-1].startswith('Outlier/Outlier (')


def test_holdout_split_fractions_groups_and_the_test_only_class():
  labels = np.array([0] * 50 + [1] * 20 + [2] * 5)
  groups = np.arange(75)
  groups[1] = groups[0]  # two identical normals
  s = splits.holdout_split(labels, groups, seed=3)
  assert (len(s.train), len(s.val), len(s.test)) == (30 + 12, 10 + 4, 10 + 4)
  assert np.bincount(labels[s.train], minlength=2).tolist() == [30, 12]
  everything = np.concatenate([s.train, s.val, s.test])
  assert len(np.unique(everything)) == 70 and not (labels[everything] == 2).any()
  sides = [k for k, part in enumerate((s.train, s.val, s.test)) if 0 in part or 1 in part]
  assert len(sides) == 1  # the identical pair sits on one side
  u = splits.holdout_split(labels, groups, seed=3, abnormal_fractions=(0.0, 0.5, 0.5))
  assert (labels[u.train] == 0).all()
  assert np.bincount(labels[u.val])[1] == 10 and np.bincount(labels[u.test])[1] == 10
  assert splits.holdout_split(labels, groups, seed=4).train.tolist() != s.train.tolist()
  with pytest.raises(ValueError, match='summing to 1'):
    splits.holdout_split(labels, groups, normal_fractions=(0.6, 0.3, 0.3))


def test_weighted_cross_entropy_is_torchs_weighted_mean():
  logits = jnp.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  labels = jnp.array([0, 1, 1])
  w = jnp.array([0.5, 2.0])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  nll = -np.log(p[np.arange(3), labels])
  expected = (0.5 * nll[0] + 2 * nll[1] + 2 * nll[2]) / (0.5 + 2 + 2)
  assert float(classifier.weighted_cross_entropy(logits, labels, w)) == pytest.approx(expected)
  masked = classifier.weighted_cross_entropy(logits, labels, w, jnp.array([True, True, False]))
  assert float(masked) == pytest.approx((0.5 * nll[0] + 2 * nll[1]) / 2.5)
  # The validation loss recomputed from P(class 1) equals the loss of the logits.
  scores = jax.nn.softmax(logits)[:, 1]
  task = classifier.ClassifierTask(model=None, tx=None)
  assert float(task.validation_loss(scores, labels, jnp.ones(3, bool), w)) == pytest.approx(
    expected, rel=1e-5
  )


def test_classifier_step_learns_a_fixed_batch():
  model = DenseNet(growth_rate=4, block_config=(1, 1), num_init_features=8)
  task = classifier.ClassifierTask(model=model, tx=optax.adam(1e-2))
  state = task.init(jax.random.PRNGKey(0), (32, 32, 3))
  x = jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 3))
  y = jnp.array([0, 1] * 4)
  x = x.at[y == 1, :8, :8].set(1.0)  # class 1 carries a bright corner
  step = jax.jit(lambda s, k: task.train_step(s, x, k, labels=y, class_weights=jnp.ones(2)))
  losses = []
  for i in range(25):
    state, m = step(state, jax.random.PRNGKey(i))
    losses.append(float(m['loss']))
  assert losses[-1] < 0.5 * losses[0]
  p, maps = task.score(state.variables, x)
  assert maps.shape == (8, 32, 32) and ((p >= 0.5) == (y == 1)).all()
  with pytest.raises(ValueError, match='RGB'):
    task.inputs(jnp.zeros((1, 8, 8, 2)))


def test_fixed_threshold_and_unknown_method():
  assert metrics.select_threshold([0.1, 0.9], [0, 1], 'fixed', value=0.5) == 0.5
  with pytest.raises(ValueError, match='fixed'):
    metrics.select_threshold([0.1, 0.9], [0, 1], 'median')


def test_two_channel_sample_grid_is_red_and_green(tmp_path):
  x = np.zeros((4, 8, 8, 2), np.float32)
  x[..., 0] = 1.0
  path = fanogan_cv.write_grid(str(tmp_path / 'grid.png'), x)
  with Image.open(path) as im:
    assert im.mode == 'RGB'
    pixel = np.asarray(im)[3, 3]
  assert pixel.tolist() == [255, 0, 0]


def _run(config, workdir):
  summary = cv.run(config, str(workdir))
  write_report(str(workdir))
  return summary


def test_densenet_tiny_end_to_end_with_cams(tmp_path, monkeypatch):
  root = _fundus_like(tmp_path / 'data')
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
  root = _fundus_like(tmp_path / 'data')
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


def test_fundus_fanogan_networks_scale_to_256_and_two_channels():
  from uadjax.models import FAnoGAN

  config = fanogan_config.get_config()
  model = FAnoGAN(**config.model.to_dict())
  x = jnp.zeros((1, 256, 256, 2))
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  out = jax.eval_shape(lambda v: model.apply(v, x), shapes)
  assert out['reconstruction'].shape == (1, 256, 256, 2) and out['z'].shape == (1, 128)
  blocks = [k for k in shapes['params']['generator'] if k.startswith('block_')]
  assert len(blocks) == 6  # 4x4 -> 256x256: six x2 stages (four at 64x64)
  # The resnet generator's widths stop at 8d as its critic's do (uncapped it had 124 M
  # parameters against the critic's 17 M).
  assert shapes['params']['generator']['input']['kernel'].shape == (128, 4 * 4 * 8 * 64)
  size = lambda part: sum(x.size for x in jax.tree.leaves(shapes['params'][part]))
  assert size('generator') < 1.2 * size('critic')


@requires_drimdb
def test_drimdb_loads_with_its_classes_and_split():
  config = densenet_config.get_config('tiny')
  protocol = cv.Protocol(config)
  labels = protocol.dataset.labels
  assert np.bincount(labels).tolist() == [125, 69, 22]
  s = protocol.splits[0]
  assert np.bincount(labels[s.train]).tolist() == [75, 41]
  assert np.bincount(labels[s.test], minlength=3).tolist()[2] == 0
