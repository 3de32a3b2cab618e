"""Score fusion of finished runs (uadjax/ensemble.py): the checks, the rule chosen on validation,
and the fused run read by predict, the report and compare."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, env_without_gpu, make_config, shared_dir
from uadjax import ensemble, inference, io, predict
from uadjax.data.phantoms import make_phantoms


@pytest.fixture(scope='module')
def intensity_run(tmp_path_factory):
  """The intensity baseline's tiny protocol on the same phantoms and splits as `tiny_run`."""
  from uadjax import protocol as protocol_lib

  def build(folder):
    protocol_lib.run(make_config('configs/headct/intensity.py:tiny,phantoms'), str(folder / 'run'))

  return shared_dir(tmp_path_factory, 'intensity_run', build) / 'run'


def _copy(run, to):
  """A run's config and metrics (no checkpoints, figures or report): enough to fuse."""
  shutil.copytree(run, to, ignore=shutil.ignore_patterns('checkpoints', 'report', 'figures'))
  return to


def _metrics(run, i):
  return io.read_json(run / f'iter_{i:02d}' / 'metrics.json')


def _edit_metrics(run, edit):
  for i in (0, 1):
    path = run / f'iter_{i:02d}' / 'metrics.json'
    record = io.read_json(path)
    edit(record)
    io.write_json(path, record)


def test_candidates_are_the_mean_then_a_grid_summing_to_one():
  tried = ensemble.candidates(3, 0.25)
  assert tried[0] == ('mean', (1 / 3, 1 / 3, 1 / 3))
  weights = [w for _, w in tried[1:]]
  assert len(weights) == 15  # compositions of 4 quarters into 3 parts
  assert all(np.isclose(sum(w), 1) and set(w) <= {0, 0.25, 0.5, 0.75, 1} for w in weights)
  # Two members: the grid's 0.5/0.5 is the mean, left out.
  assert [w for _, w in ensemble.candidates(2, 0.25)[1:]] == [
    (0, 1),
    (0.25, 0.75),
    (0.75, 0.25),
    (1, 0),
  ]


def test_standardisation_is_on_the_validation_normals_only():
  scores, labels = [1.0, 3.0, 100.0, -50.0], [0, 0, 1, 1]
  assert ensemble.standardisation(scores, labels) == (2.0, 1.0)
  assert ensemble.standardisation([5.0, 5.0, 9.0], [0, 0, 1]) == (5.0, 1.0)  # no spread: shift


def test_fusing_a_run_with_itself_gives_its_own_aucs(tiny_run, tmp_path):
  result = ensemble.fuse([tiny_run, tiny_run], tmp_path / 'ens')
  assert result['rule']['name'] == 'mean'  # every candidate ties: the mean is kept
  for i in (0, 1):
    own, fused = _metrics(tiny_run, i), _metrics(tmp_path / 'ens', i)
    # The same images on the same side of the threshold: every test metric is the run's.
    for k in ('auc', 'accuracy', 'recall', 'precision', 'f1', 'specificity'):
      assert fused['test'][k] == pytest.approx(own['test'][k], abs=1e-6), k
    own_val = float(ensemble.metrics_lib.auc(own['val_scores'], own['val_labels'], xp=np))
    assert fused['selection_metric'] == pytest.approx(own_val, abs=1e-6)
    assert fused['val_names'] == own['val_names'] and fused['test_names'] == own['test_names']
  member = result['members'][0]
  assert result['fused']['test_auc'] == pytest.approx(member['test_auc'], abs=1e-6)
  assert result['fused']['val_auc'] == pytest.approx(member['val_auc'], abs=1e-6)


def test_runs_of_other_data_or_splits_are_refused(tiny_run, tmp_path):
  other = _copy(tiny_run, tmp_path / 'other')
  config = io.read_json(other / 'config.json')
  config['data_fingerprint']['sha256'] = '0' * 64
  name = sorted(config['data_fingerprint']['images'])[0]
  digest, label = config['data_fingerprint']['images'][name].split(':')
  config['data_fingerprint']['images'][name] = f'{"f" * len(digest)}:{label}'
  io.write_json(other / 'config.json', config)
  with pytest.raises(ensemble.EnsembleError, match=f'other data: 1 with other pixels \\({name}'):
    ensemble.fuse([tiny_run, other], tmp_path / 'ens')

  split = _copy(tiny_run, tmp_path / 'split')
  path = split / 'iter_01' / 'metrics.json'
  record = io.read_json(path)
  # Two images of other classes swapped: the labels read the same, the names do not.
  k = record['val_labels'].index(1 - record['val_labels'][0])
  record['val_names'][0], record['val_names'][k] = record['val_names'][k], record['val_names'][0]
  io.write_json(path, record)
  with pytest.raises(ensemble.EnsembleError) as error:
    ensemble.fuse([tiny_run, split], tmp_path / 'ens')
  message = str(error.value)
  assert str(tiny_run) in message and str(split) in message
  assert 'iteration 1: validation images 2 of' in message

  seed = _copy(tiny_run, tmp_path / 'seed')
  config = io.read_json(seed / 'config.json')
  config['seed'] = 1
  io.write_json(seed / 'config.json', config)
  with pytest.raises(ensemble.EnsembleError, match='differ in seed'):
    ensemble.fuse([tiny_run, seed], tmp_path / 'ens')
  assert not (tmp_path / 'ens' / 'config.json').exists()


def test_a_test_only_change_leaves_the_rule_and_the_threshold_unchanged(
  tiny_run, intensity_run, tmp_path
):
  before = ensemble.fuse([tiny_run, intensity_run], tmp_path / 'before')
  changed = [_copy(run, tmp_path / name) for run, name in ((tiny_run, 'a'), (intensity_run, 'b'))]

  def scramble(record):
    rng = np.random.default_rng(record['iteration'])
    record['test_scores'] = (rng.normal(size=len(record['test_scores'])) * 1e3).tolist()

  for run in changed:
    _edit_metrics(run, scramble)
  after = ensemble.fuse(changed, tmp_path / 'after')
  assert after['rule'] == before['rule'] and after['candidates'] == before['candidates']
  for i in (0, 1):
    a, b = _metrics(tmp_path / 'before', i), _metrics(tmp_path / 'after', i)
    assert a['test_scores'] != b['test_scores']  # the change reached the fused test scores
    assert a['threshold'] == b['threshold'] and a['val_scores'] == b['val_scores']
    assert [(m['mean'], m['std']) for m in a['ensemble']['members']] == [
      (m['mean'], m['std']) for m in b['ensemble']['members']
    ]
    # Each member's statistics are its validation normals' mean and std.
    for member, run in zip(a['ensemble']['members'], (tiny_run, intensity_run), strict=True):
      own = _metrics(run, i)
      normal = np.asarray(own['val_scores'])[np.asarray(own['val_labels']) == 0]
      assert member['mean'] == pytest.approx(normal.mean())
      assert member['std'] == pytest.approx(normal.std())


def test_the_rule_follows_the_validation_auc(intensity_run, tmp_path):
  good = _copy(intensity_run, tmp_path / 'good')
  wrong = _copy(intensity_run, tmp_path / 'wrong')

  def scores(sign):
    def edit(record):  # abnormal validation images above the normals (sign 1) or below (-1)
      noise = 0.3 * np.sin(np.arange(len(record['val_labels'])))
      record['val_scores'] = (sign * np.asarray(record['val_labels']) + noise).tolist()

    return edit

  _edit_metrics(good, scores(1))
  _edit_metrics(wrong, scores(-1))
  result = ensemble.fuse([wrong, good], tmp_path / 'ens')
  # The mean cancels the two out; all weight on the run that ranks validation right wins.
  assert result['rule']['weights'] == [0.0, 1.0]
  assert result['fused']['val_auc'] == result['members'][1]['val_auc'] > 0.9
  assert result['candidates'][0]['val_auc'] < result['fused']['val_auc']


def test_predict_on_an_ensemble_equals_the_fused_scores_of_its_members(
  tiny_run, intensity_run, tmp_path
):
  out = tmp_path / 'ens'
  result = ensemble.fuse([tiny_run, intensity_run], out, step=0.5)
  folder = tmp_path / 'images'
  folder.mkdir()
  images, *_ = make_phantoms(2, 2, 32, seed=11)
  for k, x in enumerate(images):
    Image.fromarray((x[..., 0] * 255).astype(np.uint8)).save(folder / f'{k}.png')
  predicted = predict.predict(str(out), str(folder), str(tmp_path / 'pred'))
  assert predicted['n_images'] == 4 and predicted['n_errors'] == 0
  rows = {r['file']: r for r in predicted['rows']}
  # The members' own models on the images predict read, combined with the saved rule.
  read = np.stack([np.asarray(Image.open(folder / f'{k}.png'), np.float32) / 255 for k in range(4)])
  read = read[..., None]
  weights = result['rule']['weights']
  thresholds = []
  fused = np.zeros((2, 4))
  for i in (0, 1):
    rule = _metrics(out, i)
    thresholds.append(rule['threshold']['value'])
    for k, run in enumerate((tiny_run, intensity_run)):
      stats = rule['ensemble']['members'][k]
      if not weights[k]:
        continue
      scores, _ = inference.load_models(str(run), [i])[0].score(read)
      fused[i] += weights[k] * (scores - stats['mean']) / stats['std']
  for k in range(4):
    row = rows[f'{k}.png']
    for i in (0, 1):
      assert float(row[f'score_iter_{i:02d}']) == pytest.approx(fused[i, k], rel=1e-4, abs=1e-5)
    assert float(row['score']) == pytest.approx(fused[:, k].mean(), rel=1e-4, abs=1e-5)
    assert float(row['threshold']) == pytest.approx(np.mean(thresholds), rel=1e-5)
    abnormal = fused[:, k].mean() >= np.mean(thresholds)
    assert row['decision'] == ('abnormal' if abnormal else 'normal')


def test_a_fused_run_refuses_a_member_changed_since(tiny_run, intensity_run, tmp_path):
  members = [tmp_path / 'a', tmp_path / 'b']
  for run, to in zip((tiny_run, intensity_run), members, strict=True):
    shutil.copytree(run, to)
  result = ensemble.fuse(members, tmp_path / 'ens', step=1.0)
  used = members[int(np.argmax(result['rule']['weights']))]
  _edit_metrics(used, lambda r: r.update(val_scores=[v + 1 for v in r['val_scores']]))
  with pytest.raises(inference.RunError, match=f'{used} changed since the fusion'):
    inference.load_models(str(tmp_path / 'ens'))
  # Another fusion into a folder that holds another run is refused.
  with pytest.raises(ensemble.EnsembleError, match='holds another run'):
    ensemble.fuse(members[::-1], tmp_path / 'ens')


def test_the_entry_point_fuses_and_report_and_compare_read_the_run(
  tiny_run, intensity_run, tmp_path
):
  from uadjax.reports import compare_runs, write_report

  out = tmp_path / 'ens'
  cmd = [
    sys.executable,
    '-m',
    'experiments.ensemble',
    f'--run={tiny_run}',
    f'--run={intensity_run}',
    f'--workdir={out}',
  ]
  done = subprocess.run(
    cmd, cwd=REPO, env=env_without_gpu(), capture_output=True, text=True, timeout=300
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert '| **fused** |' in done.stdout and (out / 'ensemble.md').read_text() in done.stdout
  summary = io.read_json(out / 'summary.json')
  assert summary['model'] == 'ensemble' and summary['n_iterations'] == 2
  with open(out / 'summary.md') as f:
    assert 'ensemble (uadjax)' in f.read()

  report = (REPO / write_report(str(out))).read_text()
  assert 'iterations, score fusion of 2 runs (' in report and '![Test images by outcome]' in report
  assert '## Parts of the score' in report
  table = compare_runs([str(tiny_run), str(out)], str(tmp_path / 'compare'))['markdown']
  assert '| ens | ensemble | 2 |' in table

  # A mismatch ends the entry point with one line naming it.
  refused = subprocess.run(
    [*cmd[:3], f'--run={tiny_run}', f'--workdir={tmp_path / "again"}'],
    cwd=REPO,
    env=env_without_gpu(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert refused.returncode == 2 and 'two runs or more' in refused.stderr


def test_a_test_only_class_is_fused_with_the_same_rule_and_threshold(
  tiny_run, intensity_run, tmp_path
):
  members = [_copy(run, tmp_path / name) for run, name in ((tiny_run, 'a'), (intensity_run, 'b'))]
  for k, run in enumerate(members):

    def add_outliers(record, k=k):  # the fundus runs' test-only class, as evaluate writes it
      record['extra_test'] = {
        'classes': ['Outlier'],
        'metrics': {},
        'scores': [float(v) * (k + 1) for v in record['val_scores'][:3]],
        'names': ['o1.png', 'o2.png', 'o3.png'],
      }

    _edit_metrics(run, add_outliers)
  result = ensemble.fuse(members, tmp_path / 'ens')
  assert result['summary']['extra_test']['classes'] == ['Outlier']
  for i in (0, 1):
    fused = _metrics(tmp_path / 'ens', i)
    expected = sum(
      m['weight'] * (np.asarray(_metrics(run, i)['extra_test']['scores']) - m['mean']) / m['std']
      for m, run in zip(fused['ensemble']['members'], members, strict=True)
    )
    np.testing.assert_allclose(fused['extra_test']['scores'], expected, rtol=1e-12)
    normal = np.asarray(fused['test_labels']) == 0
    flagged = np.sum(np.asarray(fused['test_scores'])[normal] >= fused['threshold']['value'])
    assert fused['extra_test']['metrics']['fp'] == flagged  # the test normals, same threshold
  assert 'Test-only class Outlier' in (tmp_path / 'ens' / 'summary.md').read_text()
