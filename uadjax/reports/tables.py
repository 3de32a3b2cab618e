"""Markdown tables of a cross-validation run, next to the study's published numbers.

The study's rows and the models' display names are the families' (`uadjax.families`).

Attributes:
  summary_markdown: the run's summary as a table in the study's layout, optionally with the
    study's row for comparison and a per-iteration table.
  extra_test_markdown: the test-only class (DRIMDB's outliers) against the test normals.
  study_row_for: which study row a run's config asks for.
  format_mean_std: '0.78 ± 0.09', '0.75' (no std, or one iteration) or '–' (absent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from uadjax import families
from uadjax.run import fingerprint

COLUMNS = ('auc', 'accuracy', 'recall', 'precision', 'f1', 'specificity')
HEADERS = ('AUC', 'Accuracy', 'Recall', 'Precision', 'F1', 'Specificity')
DASH = '–'


def study_row(name: str) -> dict:
  """{metric: (mean, std or None)} of the study's row of a family ('f-AnoGAN' spellings too)."""
  key = ''.join(c for c in str(name).lower() if c.isalnum())
  family = families.FAMILIES.get(key)
  if family is None or family.study is None:
    known = sorted(n for n, f in families.FAMILIES.items() if f.study is not None)
    raise ValueError(f'No study row for {name!r}; expected one of {known}.')
  return family.study.metrics


def _number(value) -> str:
  if value is None:
    return DASH
  value = float(value)
  return 'nan' if math.isnan(value) else f'{value:.2f}'


def format_mean_std(entry, n_iterations: int | None = None) -> str:
  """'0.78 ± 0.09' from {'mean', 'std'} or (mean, std); '–' when the metric is absent; the mean
  alone for a single published value (std None) or a run of one iteration (`n_iterations` 1,
  whose std of 0 was never measured)."""
  if entry is None:
    return DASH
  mean, std = (entry['mean'], entry['std']) if isinstance(entry, dict) else entry
  if std is None or n_iterations == 1:
    return _number(mean)
  return f'{_number(mean)} ± {_number(std)}'


def _row(cells: Sequence[str]) -> str:
  return '| ' + ' | '.join(cells) + ' |'


def _iteration_count(summary: dict) -> int | None:
  if summary.get('n_iterations') is not None:
    return int(summary['n_iterations'])
  lengths = [len(m.get('values', ())) for m in (summary.get('metrics') or {}).values()]
  return max(lengths) if lengths else None


def per_iteration_markdown(per_iteration: Sequence[dict]) -> str:
  """One row per iteration: g/b, test metrics, the selected epoch and the threshold."""
  lines = [
    _row(
      (
        'Iteration (g/b)',
        'AUC',
        'Accuracy',
        'Recall',
        'Precision',
        'F1',
        'Selected epoch',
        'Threshold',
      )
    ),
    _row(('---',) * 8),
  ]
  for i, metrics in enumerate(per_iteration):
    g, b = metrics.get('normal_fold'), metrics.get('abnormal_half')
    index = metrics.get('iteration', i)
    name = f'{index} ({g}/{b})' if g is not None and b is not None else str(index)
    test = metrics.get('test') or {}
    epoch = metrics.get('selected_epoch')
    threshold = (metrics.get('threshold') or {}).get('value')
    lines.append(
      _row(
        (
          name,
          *(_number(test.get(k)) for k in ('auc', 'accuracy', 'recall', 'precision', 'f1')),
          DASH if epoch is None else str(epoch),
          # Scores are reconstruction errors of any scale (1e-3 for a CAE, hundreds for an energy):
          # significant digits, not two decimals.
          DASH if threshold is None else f'{float(threshold):.4g}',
        )
      )
    )
  return '\n'.join(lines)


def summary_markdown(
  summary: dict,
  title: str | None = None,
  study_model: str | None = None,
  per_iteration: Sequence[dict] | None = None,
) -> str:
  """The run's summary as a Markdown table in the layout of the study's results table.

  Args:
    summary: {'model', 'n_iterations', 'metrics': {name: {'mean', 'std', 'values'}}}, as written
      by the cross-validation runner (`uadjax.evaluation.metrics.summarize` gives 'metrics').
    title: optional heading ('## title') above the table.
    study_model: 'cae', 'ssae' or 'fanogan' (any spelling, e.g. 'f-AnoGAN'): adds the study's
      published row below the run's, for comparison. Specificity is '–' there (not reported).
    per_iteration: optional list of the per-iteration metrics dicts; adds a second table with each
      iteration's test metrics, selected epoch and threshold.

  Returns:
    The Markdown text, ending in a newline.

  Raises:
    ValueError: `study_model` is not one of the study's head-CT models.
  """
  metrics = summary.get('metrics') or {}
  model = families.display_name(summary.get('model'))
  n = _iteration_count(summary)
  lines = []
  if title:
    lines += [f'## {title}', '']
  lines += [
    _row(('Model', *HEADERS)),
    _row(('---',) * (len(HEADERS) + 1)),
    _row((f'{model} (uadjax)', *(format_mean_std(metrics.get(k), n) for k in COLUMNS))),
  ]
  if study_model is not None:
    study = study_row(study_model)
    lines.append(
      _row(
        (
          f'{families.display_name(study_model)} (study)',
          *(format_mean_std(study.get(k)) for k in COLUMNS),
        )
      )
    )
  if n == 1:
    note = 'Test metrics of one iteration (one split: no std). Positive class = abnormal.'
  else:
    over = f'{n} iterations' if n is not None else 'the iterations'
    note = (
      f'Test metrics, mean ± std over {over}; std is the population std (ddof = 0, '
      "numpy's default, as in the study). Positive class = abnormal."
    )
  lines += ['', note]
  if per_iteration:
    lines += ['', per_iteration_markdown(per_iteration)]
  return '\n'.join(lines) + '\n'


def extra_test_markdown(summary: dict) -> str:
  """A table of the summary's test-only class(es) (`summary['extra_test']`) scored against the
  test normals with the same threshold: mean ± std over the iterations, plain values for one."""
  extra = summary['extra_test']
  classes, metrics = extra['classes'], extra['metrics']
  lines = [
    '',
    f'Test-only class {", ".join(classes)} against the test normals (same checkpoint and '
    'threshold):',
    '',
    _row(('Model', *HEADERS)),
    _row(('---',) * (len(HEADERS) + 1)),
    _row(
      ('this run', *(format_mean_std(metrics.get(k), _iteration_count(summary)) for k in COLUMNS))
    ),
    '',
  ]
  return '\n'.join(lines)


def study_row_for(config, data_fingerprint: dict | None = None) -> str | None:
  """The study row to set beside a run's results: `config.study_row` when the config has one
  ('' = none), else the head-CT row of its model, but only beside the study's own head-CT set
  (the run's recorded data fingerprint says which; runs that recorded none are shown it as
  before); none for the synthetic phantoms, which the study's real-data rows would mislead
  about.

  Args:
    config: the run's config (config.json holds its `data_fingerprint` too).
    data_fingerprint: the fingerprint, where `config` does not hold it.
  """
  if config.data.source == 'phantoms':
    return None
  if 'study_row' in config:
    return config.study_row or None
  family = families.FAMILIES.get(config.get('model_name'))
  if family is None or family.study is None or family.study.data != families.HEAD_CT:
    return None
  recorded = data_fingerprint or config.get('data_fingerprint')
  if fingerprint.is_study_data(recorded) is False:
    return None
  return config.model_name
