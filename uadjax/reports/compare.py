"""Several runs side by side: the study's summary table and one figure of ROC curves.

Attributes:
  run_row: one run's label, model and mean ± std test metrics, from its folder.
  mean_roc: the mean ROC curve of a run's iterations (vertical averaging) and its std.
  compare_runs: writes `comparison.md`, `comparison.csv` and `roc.png` for a set of runs.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from uadjax import families, inference, io
from uadjax.evaluation import metrics as metrics_lib
from uadjax.reports import tables
from uadjax.reports.figures import iteration_colors, save_png

METRICS = ('auc', 'accuracy', 'recall', 'precision', 'f1')


def run_row(workdir: str, label: str | None = None) -> dict:
  """{'run', 'model', 'source', 'n_iterations', metric: (mean, std)} of one run, and its
  per-iteration metrics under 'iterations'. Recomputed from metrics.json, so a run that is
  still going is compared on its finished iterations."""
  config = inference.load_config(workdir)
  finished = list(inference.finished_iterations(workdir).values())
  if not finished:
    raise inference.RunError(f'{workdir}: no finished iteration (iter_XX/metrics.json).')
  summary = metrics_lib.summarize([m['test'] for m in finished], METRICS)
  return {
    'run': label or os.path.basename(os.path.normpath(workdir)),
    'model': config.get('model_name', '?'),
    'study_row': tables.study_row_for(config),
    'source': 'uadjax',
    'n_iterations': len(finished),
    **{k: (summary[k]['mean'], summary[k]['std']) for k in METRICS},
    'iterations': finished,
  }


def mean_roc(metrics_list: Sequence[dict], grid: int = 201):
  """(fpr grid, mean tpr, std tpr) over the iterations' test ROC curves.

  Each iteration has its own model and score scale, so curves are averaged at equal false
  positive rate (vertical averaging), not by pooling scores.
  """
  # Imported here: scikit-learn takes ~0.7 s to import, and every run's summary imports this
  # package (uadjax.protocol.evaluate.write_summary) without needing it.
  from sklearn.metrics import roc_curve

  fpr_grid = np.linspace(0, 1, grid)
  tprs = []
  for m in metrics_list:
    labels, scores = np.asarray(m.get('test_labels', [])), np.asarray(m.get('test_scores', []))
    if labels.size == 0 or len(np.unique(labels)) < 2:
      continue
    fpr, tpr, _ = roc_curve(labels, scores)
    tprs.append(np.interp(fpr_grid, fpr, tpr))
  if not tprs:
    return fpr_grid, None, None
  tprs = np.array(tprs)
  tprs[:, 0] = 0.0
  return fpr_grid, tprs.mean(0), tprs.std(0)


def _unique_labels(workdirs: Sequence[str]) -> list[str]:
  """Folder names, made unique with their parent when two runs share a name."""
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  return [
    os.path.join(os.path.basename(os.path.dirname(os.path.normpath(w))), n)
    if names.count(n) > 1
    else n
    for w, n in zip(workdirs, names, strict=True)
  ]


def plot_roc(rows: Sequence[dict], path) -> str:
  """Each run's mean test ROC curve with a ±1 std band, and its mean AUC in the legend."""
  fig = Figure(figsize=(6.2, 5.4), layout='constrained')
  ax = fig.subplots()
  for row, color in zip(rows, iteration_colors(len(rows)), strict=True):
    fpr, tpr, std = mean_roc(row['iterations'])
    if tpr is None:
      continue
    auc_mean, auc_std = row['auc']
    ax.plot(
      fpr,
      tpr,
      color=color,
      lw=1.8,
      label=f'{row["run"]} ({families.display_name(row["model"])}): '
      f'AUC {auc_mean:.2f} ± {auc_std:.2f}, {row["n_iterations"]} it.',
    )
    ax.fill_between(
      fpr, np.clip(tpr - std, 0, 1), np.clip(tpr + std, 0, 1), color=color, alpha=0.15
    )
  ax.plot([0, 1], [0, 1], color='0.5', lw=0.8, ls=':')
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.01)
  ax.set_aspect('equal')
  ax.set_xlabel('false positive rate (normal images flagged)')
  ax.set_ylabel('true positive rate (abnormal images found)')
  ax.set_title('Test ROC, mean over iterations (band: ±1 std)')
  ax.grid(True, alpha=0.3)
  ax.legend(loc='lower right', fontsize='small')
  return save_png(fig, path)


def compare_runs(workdirs: Sequence[str], outdir: str) -> dict:
  """The summary table of several runs beside the study's rows, as Markdown and CSV, and a figure
  of their ROC curves.

  Args:
    workdirs: run folders (each with config.json and iter_XX/metrics.json).
    outdir: where comparison.md, comparison.csv and roc.png go.

  Returns:
    {'markdown': text, 'paths': [md, csv, png]}.
  """
  if not workdirs:
    raise ValueError('No runs to compare: give one or more run folders.')
  rows = [run_row(w, label) for w, label in zip(workdirs, _unique_labels(workdirs), strict=True)]
  study_rows = []
  # The study row each run's config asks for (none for the phantoms or the fundus f-AnoGAN).
  for model in dict.fromkeys(r['study_row'] for r in rows if r['study_row']):
    study = tables.study_row(model)
    study_rows.append(
      {
        'run': 'study',
        'model': model,
        'source': 'study',
        'n_iterations': 10 if model != 'densenet' else 1,
        **{k: study.get(k) for k in METRICS},
      }
    )
  headers = ('Run', 'Model', 'Iterations', 'AUC', 'Accuracy', 'Recall', 'Precision', 'F1')
  lines = ['| ' + ' | '.join(headers) + ' |', '|' + ' --- |' * len(headers)]
  for r in rows + study_rows:
    cells = (
      r['run'],
      families.display_name(r['model']),
      str(r['n_iterations']),
      *(tables.format_mean_std(r[k], r['n_iterations']) for k in METRICS),
    )
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += [
    '',
    "Test metrics, mean ± population std over each run's finished iterations (a run of one "
    'iteration, such as a fundus hold-out split, gives its plain values); "study" rows are '
    'the published results (head CT: 10 iterations; the fundus classifier: one split of its '
    'private UWF set). Positive class = abnormal.',
    '',
    '![ROC curves](roc.png)',
  ]
  markdown = '\n'.join(lines) + '\n'
  os.makedirs(outdir, exist_ok=True)
  md_path = io.write_text(os.path.join(outdir, 'comparison.md'), markdown)
  csv_path = os.path.join(outdir, 'comparison.csv')
  with open(csv_path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(
      ['run', 'model', 'source', 'n_iterations']
      + [f'{k}_{s}' for k in METRICS for s in ('mean', 'std')]
    )
    for r in rows + study_rows:
      values = [v for k in METRICS for v in (r[k] if r[k] is not None else ('', ''))]
      writer.writerow([r['run'], r['model'], r['source'], r['n_iterations'], *values])
  png_path = plot_roc(rows, os.path.join(outdir, 'roc.png'))
  return {'markdown': markdown, 'paths': [md_path, csv_path, png_path]}
