"""Tests of uadjax.reports: figures write PNGs, gaps in a run never crash, tables are exact."""

import math
import struct

import numpy as np
import pytest

from uadjax.evaluation.metrics import classification_metrics, select_threshold, summarize
from uadjax.reports import figures, tables

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _fake_iteration(rng, iteration, epochs=120, val_every=10):
  """A metrics dict shaped like the runner's metrics.json, with random but plausible values."""
  g, b = iteration % 5, iteration // 5
  epoch = list(range(1, epochs + 1))
  loss = 0.05 * np.exp(-np.arange(epochs) / 40) + 0.002 + 0.001 * rng.random(epochs)
  v_epoch = list(range(val_every, epochs + 1, val_every))
  v_auc = np.clip(
    0.6
    + 0.25 * (1 - np.exp(-np.arange(len(v_epoch)) / 4))
    + 0.05 * rng.standard_normal(len(v_epoch)),
    0,
    1,
  )
  selected = v_epoch[int(np.argmax(v_auc))]

  def scores(n_normal, n_abnormal):
    labels = np.r_[np.zeros(n_normal), np.ones(n_abnormal)].astype(int)
    values = np.where(
      labels == 1, rng.normal(0.014, 0.004, labels.size), rng.normal(0.010, 0.003, labels.size)
    )
    return np.abs(values), labels

  val_scores, val_labels = scores(20, 50)
  test_scores, test_labels = scores(20, 50)
  threshold = select_threshold(val_scores, val_labels, 'f1')
  return {
    'iteration': iteration,
    'normal_fold': g,
    'abnormal_half': b,
    'n_train': 60,
    'n_val': 70,
    'n_test': 70,
    'history': {'epoch': epoch, 'train_loss': loss.tolist()},
    'validation': {
      'epoch': v_epoch,
      'auc': v_auc.tolist(),
      'loss': (0.01 + 0.001 * rng.random(len(v_epoch))).tolist(),
    },
    'selection': 'val_auc',
    'selected_epoch': selected,
    'threshold': {'method': 'f1', 'value': threshold},
    'val_scores': val_scores.tolist(),
    'val_labels': val_labels.tolist(),
    'test': classification_metrics(test_scores, test_labels, threshold),
    'test_scores': test_scores.tolist(),
    'test_labels': test_labels.tolist(),
    'test_names': [f'{i:03d}.png' for i in range(test_labels.size)],
  }


@pytest.fixture(scope='module')
def run():
  """Ten synthetic iterations and their summary, as the cross-validation runner writes them."""
  rng = np.random.default_rng(0)
  metrics_list = [_fake_iteration(rng, i) for i in range(10)]
  summary = {
    'model': 'cae',
    'n_iterations': 10,
    'metrics': summarize([m['test'] for m in metrics_list]),
  }
  return metrics_list, summary


@pytest.fixture(scope='module')
def gappy(run):
  """The same run with the gaps a real one can have: NaN AUCs, no validation, no history."""
  metrics_list = [dict(m) for m in run[0]]
  metrics_list[0]['validation'] = {
    'epoch': [10, 20, 30],
    'auc': [float('nan'), 0.7, None],
    'loss': [0.1, 0.1, 0.1],
  }
  metrics_list[0]['selected_epoch'] = 30  # its AUC is missing: no dot, no crash
  metrics_list[1]['validation'] = {'epoch': [], 'auc': [], 'loss': []}
  metrics_list[2].pop('history')
  metrics_list[3]['validation'] = {'epoch': [10, 20], 'auc': [float('nan')] * 2, 'loss': [0, 0]}
  metrics_list[4]['val_scores'], metrics_list[4]['val_labels'] = [], []
  metrics_list[5]['test_scores'], metrics_list[5]['test_labels'] = [], []
  metrics_list[6]['test'] = dict(metrics_list[6]['test'], auc=float('nan'))
  metrics_list[7]['threshold'] = {'method': 'f1', 'value': None}
  metrics_list[8]['history'] = {'epoch': [1, 2], 'train_loss': [0.0, -1.0]}  # nothing > 0 to log
  return metrics_list


def _png_size(path):
  """(width, height) from the PNG header, after checking the signature."""
  with open(path, 'rb') as f:
    head = f.read(24)
  assert head[:8] == PNG_SIGNATURE, path
  return struct.unpack('>II', head[16:24])


def _assert_png(path, min_bytes=5_000):
  width, height = _png_size(path)
  assert width > 300 and height > 200
  with open(path, 'rb') as f:
    assert len(f.read()) > min_bytes  # not a blank canvas


def test_threshold_selection_one_iteration(run, tmp_path):
  _assert_png(figures.plot_threshold_selection(run[0][3], tmp_path / 'one.png'))


def test_write_run_figures_names(run, tmp_path):
  # Also the test of each figure on a complete run (one at a time they cost a second each), and
  # of the parent folders being created.
  paths = figures.write_run_figures(run[0], tmp_path / 'figs' / 'cae')
  names = ['training_curves.png', 'threshold_selection.png', 'score_histograms.png']
  assert paths == [str(tmp_path / 'figs' / 'cae' / n) for n in names]
  for path in paths:
    _assert_png(path)


def test_figures_tolerate_gaps(gappy, tmp_path):
  for path in figures.write_run_figures(gappy, tmp_path):
    _assert_png(path)
  _assert_png(figures.plot_threshold_selection(gappy[4], tmp_path / 'no_val.png'), 1_000)


@pytest.mark.parametrize('n', [0, 3])
def test_figures_any_number_of_iterations(run, tmp_path, n):
  for path in figures.write_run_figures(run[0][:n], tmp_path):
    _assert_png(path, 1_000)


def test_figures_without_validation_at_all(run, tmp_path):
  bare = [
    {k: v for k, v in m.items() if k not in ('validation', 'history', 'selected_epoch')}
    for m in run[0][:2]
  ]
  _assert_png(figures.plot_training_curves(bare, tmp_path / 'bare.png'), 1_000)


def test_training_curves_draw_the_validation_loss_of_a_loss_selected_run(
  run, tmp_path, monkeypatch
):
  saved = []
  monkeypatch.setattr(figures, '_save', lambda fig, path: saved.append(fig) or str(path))
  one = dict(run[0][0])
  figures.plot_training_curves([one], tmp_path / 'auc.png')
  one.update(selection='val_loss', selected_epoch=int(one['validation']['epoch'][1]))
  one['validation'] = {
    **one['validation'],
    'loss': [0.5 + k for k in range(len(one['validation']['epoch']))],
  }
  figures.plot_training_curves([one], tmp_path / 'loss.png')
  by_auc, by_loss = (fig.axes[0] for fig in saved)
  assert len(by_auc.lines) == 1 and by_auc.get_title() == 'Training loss'
  # Training loss, validation loss (dashed) and the selected epoch's dot on it (loss 1.5).
  assert len(by_loss.lines) == 3 and by_loss.lines[1].get_linestyle() == '--'
  assert by_loss.lines[2].get_ydata()[0] == 1.5 and 'validation loss' in by_loss.get_title()


def _hand_mean_std(values):
  mean = sum(values) / len(values)
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def test_summary_markdown_numbers(run):
  metrics_list, summary = run
  text = tables.summary_markdown(summary, title='CAE, head CT')
  lines = text.splitlines()
  assert lines[0] == '## CAE, head CT'
  header = '| Model | AUC | Accuracy | Recall | Precision | F1 | Specificity |'
  assert header in lines
  row = next(line for line in lines if line.startswith('| CAE (uadjax)'))
  cells = [c.strip() for c in row.strip('|').split('|')]
  assert len(cells) == 7
  for cell, name in zip(cells[1:], tables.COLUMNS, strict=True):
    mean, std = _hand_mean_std([m['test'][name] for m in metrics_list])
    assert cell == f'{mean:.2f} ± {std:.2f}', name
  assert 'population std' in text and '10 iterations' in text
  assert '(study)' not in text


def test_summary_markdown_study_row():
  summary = {
    'model': 'fanogan',
    'n_iterations': 10,
    'metrics': {'auc': {'mean': 0.5, 'std': 0.1, 'values': [0.4, 0.6]}},
  }
  text = tables.summary_markdown(summary, study_model='f-AnoGAN')
  assert (
    '| f-AnoGAN (study) | 0.87 ± 0.06 | 0.86 ± 0.02 | 0.93 ± 0.02 | 0.88 ± 0.01 | '
    '0.91 ± 0.01 | – |' in text
  )
  # Metrics the summary lacks are a dash, not a crash.
  assert '| f-AnoGAN (uadjax) | 0.50 ± 0.10 | – | – | – | – | – |' in text
  assert tables.STUDY_ROWS['cae']['auc'] == (0.78, 0.09)
  assert tables.STUDY_ROWS['ssae']['f1'] == (0.86, 0.01)
  with pytest.raises(ValueError, match='dagmm'):
    tables.summary_markdown(summary, study_model='dagmm')


def test_one_iteration_tables_give_plain_values_without_std():
  # A hold-out run (the fundus experiments) has one split: '± 0.00' would claim a spread that
  # was never measured.
  metrics = {'auc': {'mean': 0.73, 'std': 0.0, 'values': [0.73]}}
  summary = {
    'model': 'fanogan',
    'n_iterations': 1,
    'metrics': metrics,
    'extra_test': {'classes': ['Outlier'], 'metrics': metrics},
  }
  text = tables.summary_markdown(summary) + tables.extra_test_markdown(summary)
  assert '| f-AnoGAN (uadjax) | 0.73 | – | – | – | – | – |' in text
  assert '| this run | 0.73 | – | – | – | – | – |' in text
  assert '±' not in text.replace('mean ± std', '') and 'one split: no std' in text
  summary['n_iterations'] = 2
  assert '| this run | 0.73 ± 0.00 |' in tables.extra_test_markdown(summary)


def test_summary_markdown_per_iteration(run):
  metrics_list, summary = run
  text = tables.summary_markdown(summary, study_model='cae', per_iteration=metrics_list)
  assert '| CAE (study) | 0.78 ± 0.09 |' in text
  rows = [line for line in text.splitlines() if line[2:3].isdigit()]
  assert len(rows) == 10
  m = metrics_list[7]
  cells = [c.strip() for c in rows[7].strip('|').split('|')]
  assert cells[0] == f'7 ({m["normal_fold"]}/{m["abnormal_half"]})'
  assert cells[1] == f'{m["test"]["auc"]:.2f}'
  assert cells[6] == str(m['selected_epoch'])
  assert cells[7] == f'{m["threshold"]["value"]:.4g}'
