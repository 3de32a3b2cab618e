"""The figures of uadjax.reports.figures: they write PNGs, and gaps in a run never crash them."""

import struct

import pytest

from uadjax.reports import figures

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


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
  monkeypatch.setattr(figures, 'save_png', lambda fig, path: saved.append(fig) or str(path))
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
