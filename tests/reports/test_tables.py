"""The tables of uadjax.reports.tables: exact numbers, the study rows, one-iteration runs."""

import math

import pytest

from uadjax.reports import tables


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
  assert tables.study_row('cae')['auc'] == (0.78, 0.09)
  assert tables.study_row('f-AnoGAN')['f1'] == (0.91, 0.01)
  assert tables.study_row('ssae')['f1'] == (0.86, 0.01)
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
