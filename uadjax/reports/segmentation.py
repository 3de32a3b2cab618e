"""The phantom segmentation table and figures, drawn from `uadjax.segment.compare_runs`'s
results (pixel AUROC and best Dice of several runs' anomaly maps against the lesion masks).

Attributes:
  segmentation_markdown: the side-by-side table.
  plot_segmentation_examples: abnormal test phantoms, their masks and each model's map.
  plot_segmentation_scores: pixel AUROC and best Dice per model, mean ± std over iterations.
  write_segmentation_report: all of the above into one folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from uadjax import data, families, inference, io
from uadjax.segment import METRICS

DPI = 120
HEADERS = {'pixel_auroc': 'Pixel AUROC', 'best_dice': 'Best Dice'}


def segmentation_markdown(results: Mapping[str, dict]) -> str:
  """The side-by-side table of pixel AUROC and best Dice (mean ± std over iterations)."""
  lines = [
    '| Model | Run | Iterations | ' + ' | '.join(HEADERS[m] for m in METRICS) + ' |',
    '| --- | --- | --- | ' + ' | '.join('---' for _ in METRICS) + ' |',
  ]
  for label, r in results.items():
    cells = [f'{r["summary"][m]["mean"]:.3f} ± {r["summary"][m]["std"]:.3f}' for m in METRICS]
    lines.append(
      f'| {label} | {r["workdir"]} | {len(r["iterations"])} | ' + ' | '.join(cells) + ' |'
    )
  lines += [
    '',
    "Pixels of each iteration's test phantoms (normal and abnormal) against the lesion masks; "
    'best Dice over all thresholds (Baur et al.); mean ± population std over iterations.',
  ]
  return '\n'.join(lines) + '\n'


def _save(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=DPI, bbox_inches='tight')
  return path


def plot_segmentation_examples(results: Mapping[str, dict], path: str, n_examples: int = 4) -> str:
  """Rows: abnormal test phantoms of the first common iteration. Columns: the image, its lesion
  mask, then each model's anomaly map (own colour scale per map)."""
  first = next(iter(results.values()))
  config = inference.load_config(first['workdir'])
  dataset = data.load(config.data)
  index = {name: i for i, name in enumerate(dataset.names)}
  common = sorted(set.intersection(*(set(r['maps']) for r in results.values())))
  if not common:
    raise ValueError('The runs have no finished iteration in common.')
  it = common[0]
  names = first['maps'][it][0]
  chosen = [k for k, n in enumerate(names) if dataset.masks[index[n]].any()][:n_examples]
  cols = 2 + len(results)
  fig = Figure(figsize=(2.1 * cols, 2.1 * max(len(chosen), 1)))
  axes = fig.subplots(max(len(chosen), 1), cols, squeeze=False)
  for row, k in enumerate(chosen):
    i = index[names[k]]
    panels = [
      ('image', dataset.images[i, ..., 0], 'gray'),
      ('lesion mask', dataset.masks[i], 'gray'),
    ]
    for label, r in results.items():
      name = families.display_name(r['model'])
      title = label if label == name else f'{name} ({label})'
      panels.append((title, r['maps'][it][1][k], 'magma'))
    for col, (title, image, cmap) in enumerate(panels):
      ax = axes[row, col]
      ax.imshow(image, cmap=cmap, interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(title, fontsize=8)
    axes[row, 0].set_ylabel(names[k], fontsize=7)
  fig.suptitle(f'Anomaly maps of abnormal test phantoms (iteration {it})', fontsize=9)
  return _save(fig, path)


def plot_segmentation_scores(results: Mapping[str, dict], path: str) -> str:
  """Pixel AUROC and best Dice per model: bars of the mean, error bars of the std, dots per
  iteration."""
  fig = Figure(figsize=(3.2 * len(METRICS), 3.0))
  axes = fig.subplots(1, len(METRICS), squeeze=False)[0]
  labels = list(results)
  for ax, m in zip(axes, METRICS, strict=True):
    means = [results[label]['summary'][m]['mean'] for label in labels]
    stds = [results[label]['summary'][m]['std'] for label in labels]
    x = np.arange(len(labels))
    ax.bar(x, means, yerr=stds, color='#9ecae1', edgecolor='black', capsize=4)
    for j, label in enumerate(labels):
      values = [row[m] for row in results[label]['iterations']]
      ax.plot(np.full(len(values), x[j]), values, 'k.', markersize=4)
      ax.text(x[j], means[j] / 2, f'{means[j]:.3f}', ha='center', fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_title(HEADERS[m], fontsize=9)
  fig.suptitle('Phantom lesion segmentation (test pixels)', fontsize=9)
  fig.tight_layout()
  return _save(fig, path)


def write_segmentation_report(results: Mapping[str, dict], outdir: str) -> dict:
  """Writes segmentation.json, segmentation.md and the two figures of `results`
  (`uadjax.segment.compare_runs`) into `outdir`. Returns the results without the maps."""
  os.makedirs(outdir, exist_ok=True)
  plain = {label: {k: v for k, v in r.items() if k != 'maps'} for label, r in results.items()}
  io.write_json(os.path.join(outdir, 'segmentation.json'), plain)
  io.write_text(os.path.join(outdir, 'segmentation.md'), segmentation_markdown(results))
  plot_segmentation_scores(results, os.path.join(outdir, 'segmentation_scores.png'))
  plot_segmentation_examples(results, os.path.join(outdir, 'segmentation_examples.png'))
  return plain
