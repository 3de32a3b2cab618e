"""Figures of one cross-validation run, drawn from its per-iteration `metrics.json` dicts.

Attributes:
  plot_training_curves: training loss and validation AUC per epoch, one line per iteration
    (a fitted run: `plot_candidates`, the validation AUC of each candidate).
  plot_threshold_selection: precision, recall and F1 against the threshold, one iteration.
  plot_threshold_selection_grid: the same, one small panel per iteration.
  plot_score_histograms: test score histograms, normal vs abnormal, one panel per iteration.
  plot_score_parts: histograms of each part of a composite score (f-AnoGAN), one iteration.
  write_run_figures: training curves, threshold selection grid and score histograms, under fixed
    names in one folder.
  save_png, iteration_colors: what every figure module of uadjax.reports draws with.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas rather than through pyplot,
so nothing here switches the global backend or keeps figures alive in pyplot's registry: the
cross-validation runner can call these from a headless job, or a notebook, without side effects.

Every function tolerates the gaps a real run can leave: an iteration with no training history or
no validation epochs is skipped, NaN AUC values (a validation set with one class) break the line
instead of raising, and a panel with nothing to show says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from uadjax import io
from uadjax.evaluation import metrics as metrics_lib
from uadjax.evaluation.metrics import threshold_curve

DPI = 120
NORMAL_COLOR = '#1f77b4'
ABNORMAL_COLOR = '#d62728'
THRESHOLD_COLOR = 'black'

# Panel grid for per-iteration figures: the 2x5 protocol gives 10 iterations, drawn as 2 rows of 5.
_MAX_COLS = 5


def iteration_label(metrics: dict) -> str:
  """'it g/b' from the iteration's normal fold g and abnormal half b (its index if those lack)."""
  g, b = metrics.get('normal_fold'), metrics.get('abnormal_half')
  if g is None or b is None:
    return f'it {metrics.get("iteration", "?")}'
  return f'it {g}/{b}'


def _floats(values) -> np.ndarray:
  """A float64 array from a list that may hold None (JSON has no NaN literal by default)."""
  if values is None:
    return np.zeros(0)
  return np.array([np.nan if v is None else v for v in values], np.float64).reshape(-1)


def save_png(fig: Figure, path) -> str:
  """Writes `fig` as a PNG at `path`, creating parent folders, and releases it."""
  path = os.fspath(path)
  parent = os.path.dirname(path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=DPI, format='png', pil_kwargs={'compress_level': 1})
  # Figure objects made without pyplot are freed by the garbage collector; clearing them drops
  # the artists (and their arrays) now, which matters when a sweep writes hundreds of figures.
  fig.clear()
  return path


def _grid(n: int) -> tuple[int, int]:
  """(rows, cols) for n panels, at most 5 per row."""
  n = max(n, 1)
  cols = min(_MAX_COLS, n)
  return math.ceil(n / cols), cols


def _empty_panel(ax, text: str) -> None:
  """Says why a panel is blank, so a gap in a run is visible rather than silently missing."""
  ax.text(0.5, 0.5, text, ha='center', va='center', transform=ax.transAxes, color='0.4')
  # tick_params, not set_xticks([]): tick locations are shared between `sharey` panels, and
  # emptying them here would strip the ticks of every other panel in the row.
  ax.tick_params(left=False, bottom=False, labelleft=False, labelbottom=False)
  ax.grid(False)


def iteration_colors(n: int) -> list:
  """One distinct colour per iteration: tab10 for up to 10, tab20 beyond."""
  cmap = colormaps['tab10' if n <= 10 else 'tab20']
  return [cmap(i % cmap.N) for i in range(n)]


def plot_training_curves(metrics_list: Sequence[dict], path) -> str:
  """Training loss (log scale) and validation AUC per epoch, one line per iteration.

  The epoch selected for testing is marked by a dot on the iteration's AUC curve; if it is not one
  of the validation epochs (e.g. selection by another rule), the dot sits on the interpolated curve.
  A run selected by its validation loss (the classifier) also has that loss drawn dashed in the
  loss panel, with the selected epoch's dot on it.

  A fitted run (no epochs: its `validation` names candidates) gets `plot_candidates` instead.

  Args:
    metrics_list: per-iteration metrics dicts (the runner's `metrics.json`).
    path: where the PNG goes.

  Returns:
    `path` as a string.
  """
  if metrics_list and all('candidate' in (m.get('validation') or {}) for m in metrics_list):
    return plot_candidates(metrics_list, path)
  fig = Figure(figsize=(12, 4.4), layout='constrained')
  ax_loss, ax_auc = fig.subplots(1, 2)
  colors = iteration_colors(len(metrics_list))
  handles = []
  has_val_loss = False
  for metrics, color in zip(metrics_list, colors, strict=True):
    label = iteration_label(metrics)
    drawn = None
    history = metrics.get('history') or {}
    epochs, loss = _floats(history.get('epoch')), _floats(history.get('train_loss'))
    n = min(len(epochs), len(loss))
    # A log axis cannot show a zero or negative loss (a WGAN critic's can be): drop those points.
    keep = np.isfinite(loss[:n]) & (loss[:n] > 0)
    if keep.any():
      (drawn,) = ax_loss.plot(epochs[:n][keep], loss[:n][keep], color=color, lw=1.2, label=label)

    validation = metrics.get('validation') or {}
    selected = metrics.get('selected_epoch')
    if metrics.get('selection') == 'val_loss':
      v_epochs, v_loss = _floats(validation.get('epoch')), _floats(validation.get('loss'))
      n = min(len(v_epochs), len(v_loss))
      keep = np.isfinite(v_loss[:n]) & (v_loss[:n] > 0)
      if keep.any():
        ax_loss.plot(v_epochs[:n][keep], v_loss[:n][keep], color=color, lw=1.2, ls='--')
        has_val_loss = True
        hit = np.flatnonzero(v_epochs[:n][keep] == selected)
        if hit.size:
          y = v_loss[:n][keep][hit[0]]
          ax_loss.plot([selected], [y], 'o', color=color, ms=7, mec='black', mew=0.8, zorder=3)
    v_epochs, v_auc = _floats(validation.get('epoch')), _floats(validation.get('auc'))
    n = min(len(v_epochs), len(v_auc))
    v_epochs, v_auc = v_epochs[:n], v_auc[:n]
    if n and np.isfinite(v_auc).any():
      # NaN entries break the line, which is the honest picture of an undefined AUC.
      (line,) = ax_auc.plot(
        v_epochs, v_auc, color=color, lw=1.2, label=label, marker='.' if n < 3 else None
      )
      drawn = drawn or line
      finite = np.isfinite(v_auc)
      if selected is not None and finite.any():
        hit = np.flatnonzero(v_epochs == selected)
        if hit.size:
          y = v_auc[hit[0]]
        elif v_epochs[finite][0] <= selected <= v_epochs[finite][-1]:
          y = np.interp(selected, v_epochs[finite], v_auc[finite])
        else:
          y = np.nan
        if np.isfinite(y):
          ax_auc.plot([selected], [y], 'o', color=color, ms=7, mec='black', mew=0.8, zorder=3)
    if drawn is not None:
      handles.append(drawn)

  if has_val_loss:
    ax_loss.set_title('Training loss (solid), validation loss (dashed; dot: selected epoch)')
    ax_loss.set_ylabel('mean loss')
  else:
    ax_loss.set_title('Training loss')
    ax_loss.set_ylabel('mean training loss')
  ax_loss.set_xlabel('epoch')
  if ax_loss.lines:
    ax_loss.set_yscale('log')
    ax_loss.grid(True, which='major', alpha=0.3)
  else:
    _empty_panel(ax_loss, 'no training history')

  ax_auc.set_title('Validation AUC (dot: selected epoch)')
  ax_auc.set_xlabel('epoch')
  ax_auc.set_ylabel('AUC')
  if ax_auc.lines:
    lo = np.nanmin([np.nanmin(line.get_ydata()) for line in ax_auc.lines])
    ax_auc.set_ylim(min(0.45, lo - 0.03), 1.01)
    ax_auc.axhline(0.5, color='0.5', lw=0.8, ls=':')
    ax_auc.grid(True, alpha=0.3)
  else:
    _empty_panel(ax_auc, 'no validation history')

  if handles:
    fig.legend(
      handles=handles,
      loc='outside right center',
      title='iteration (g/b)',
      fontsize='small',
      frameon=False,
    )
  return save_png(fig, path)


def _draw_threshold_panel(ax, metrics: dict, *, small: bool) -> bool:
  """Precision / recall / F1 against threshold on one iteration's validation scores.

  Returns:
    False if the iteration has no validation scores to draw.
  """
  scores, labels = _floats(metrics.get('val_scores')), _floats(metrics.get('val_labels'))
  n = min(len(scores), len(labels))
  scores, labels = scores[:n], labels[:n]
  keep = np.isfinite(scores) & np.isfinite(labels)
  scores, labels = scores[keep], labels[keep]
  if scores.size == 0:
    _empty_panel(ax, 'no validation scores')
    return False
  curve = threshold_curve(scores, labels)
  lw = 1.2 if small else 1.6
  # The curves are step functions of t: each metric is constant between distinct scores, and the
  # rule `score >= t` changes at a score itself, hence where='post'.
  ax.step(
    curve['threshold'], curve['precision'], where='post', color='#2ca02c', lw=lw, label='precision'
  )
  ax.step(curve['threshold'], curve['recall'], where='post', color='#ff7f0e', lw=lw, label='recall')
  ax.step(curve['threshold'], curve['f1'], where='post', color='#9467bd', lw=lw + 0.4, label='F1')
  threshold = metrics.get('threshold') or {}
  value = threshold.get('value')
  if value is not None and np.isfinite(value):
    method = threshold.get('method', '')
    ax.axvline(
      value,
      color=THRESHOLD_COLOR,
      ls='--',
      lw=1.0,
      label=f'threshold = {value:.3g}' + (f' ({method})' if method and not small else ''),
    )
  ax.set_ylim(-0.03, 1.03)
  ax.grid(True, alpha=0.3)
  return True


def plot_candidates(metrics_list: Sequence[dict], path) -> str:
  """A fitted run's validation AUC of each candidate, one line per iteration, the kept
  candidate dotted (a fitted family has no epochs and no loss to draw).

  Args:
    metrics_list: per-iteration metrics dicts whose `validation` has 'candidate' and 'auc'.
    path: where the PNG goes.

  Returns:
    `path` as a string.
  """
  names = list(metrics_list[0]['validation']['candidate'])
  fig = Figure(figsize=(max(6.0, 1.2 * len(names) + 4), 4.4), layout='constrained')
  ax = fig.subplots()
  handles = []
  for metrics, color in zip(metrics_list, iteration_colors(len(metrics_list)), strict=True):
    validation = metrics['validation']
    y = _floats(validation['auc'])
    x = np.arange(len(y))  # candidates come in the task's order in every iteration
    (line,) = ax.plot(x, y, color=color, lw=1.2, marker='.', label=iteration_label(metrics))
    handles.append(line)
    kept = metrics.get('selected_candidate')
    if kept in validation['candidate']:
      k = validation['candidate'].index(kept)
      ax.plot([x[k]], [y[k]], 'o', color=color, ms=7, mec='black', mew=0.8, zorder=3)
  ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 3 else 0, ha='right')
  ax.set_xlim(-0.5, len(names) - 0.5)
  ax.set_title('Fitted, not trained: validation AUC of each candidate (dot: kept)')
  ax.set_ylabel('validation AUC')
  ax.axhline(0.5, color='0.5', lw=0.8, ls=':')
  ax.grid(True, alpha=0.3)
  fig.legend(handles=handles, loc='outside right center', title='iteration (g/b)', fontsize='small')
  return save_png(fig, path)


def plot_threshold_selection(metrics: dict, path) -> str:
  """Precision, recall and F1 of `score >= t` on one iteration's validation scores.

  The chosen threshold is a dashed vertical line whose value (and method) is in the legend.

  Args:
    metrics: one iteration's metrics dict.
    path: where the PNG goes.

  Returns:
    `path` as a string.
  """
  fig = Figure(figsize=(7, 4.4), layout='constrained')
  ax = fig.subplots()
  epoch = metrics.get('selected_epoch')
  suffix = f', epoch {epoch}' if epoch is not None else ''
  ax.set_title(f'Threshold selection on validation scores ({iteration_label(metrics)}{suffix})')
  if _draw_threshold_panel(ax, metrics, small=False):
    ax.set_xlabel('threshold (anomaly score)')
    ax.set_ylabel('metric of score >= threshold')
    ax.legend(loc='lower left', fontsize='small')
  return save_png(fig, path)


def plot_threshold_selection_grid(metrics_list: Sequence[dict], path) -> str:
  """`plot_threshold_selection` for every iteration, one small panel each (2 x 5 for 10).

  Args:
    metrics_list: per-iteration metrics dicts.
    path: where the PNG goes.

  Returns:
    `path` as a string.
  """
  rows, cols = _grid(len(metrics_list))
  fig = Figure(figsize=(3.1 * cols, 2.7 * rows + 0.6), layout='constrained')
  axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
  handles = {}
  for ax, metrics in zip(axes, metrics_list, strict=False):
    ax.set_title(iteration_label(metrics), fontsize='medium')
    if _draw_threshold_panel(ax, metrics, small=True):
      # Each panel's own threshold value stays in its own (small) legend; the curve names are
      # shared and go once into the figure legend.
      lines, names = ax.get_legend_handles_labels()
      for line, name in zip(lines, names, strict=True):
        if name.startswith('threshold'):
          ax.legend([line], [name], loc='lower left', fontsize='x-small', handlelength=1.2)
        else:
          handles.setdefault(name, line)
  for ax in axes[len(metrics_list) :]:
    ax.set_visible(False)
  if not metrics_list:
    axes[0].set_visible(True)
    _empty_panel(axes[0], 'no iterations')
  for ax in axes[::cols]:
    ax.set_ylabel('metric')
  for ax in axes[(rows - 1) * cols :]:
    ax.set_xlabel('threshold')
  if handles:
    handles['chosen threshold'] = _threshold_handle()
    fig.legend(
      handles.values(),
      handles.keys(),
      loc='outside lower center',
      ncols=len(handles),
      frameon=False,
    )
  methods = {(m.get('threshold') or {}).get('method') for m in metrics_list}
  how = ' (F1 maximised)' if methods == {'f1'} else ''
  fig.suptitle(f'Threshold selection on validation scores{how}')
  return save_png(fig, path)


def _threshold_handle() -> Line2D:
  """A legend entry that looks like the dashed threshold line."""
  return Line2D([], [], color=THRESHOLD_COLOR, ls='--', lw=1.0)


def plot_score_histograms(metrics_list: Sequence[dict], path, bins: int = 20) -> str:
  """Test score histograms, normal vs abnormal, one panel per iteration with its threshold.

  Pooling iterations into one panel would mislead: each iteration has its own model, score scale
  and threshold. Bins are shared by the two classes within a panel so the bars are comparable.

  Args:
    metrics_list: per-iteration metrics dicts.
    path: where the PNG goes.
    bins: number of bins per panel.

  Returns:
    `path` as a string.
  """
  rows, cols = _grid(len(metrics_list))
  fig = Figure(
    figsize=(3.1 * cols, 2.6 * rows + 0.6 + (0.4 if cols < 2 else 0)), layout='constrained'
  )
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  drew_any = False
  for ax, metrics in zip(axes, metrics_list, strict=False):
    scores, labels = _floats(metrics.get('test_scores')), _floats(metrics.get('test_labels'))
    n = min(len(scores), len(labels))
    scores, labels = scores[:n], labels[:n]
    keep = np.isfinite(scores) & np.isfinite(labels)
    scores, labels = scores[keep], labels[keep]
    test_auc = (metrics.get('test') or {}).get('auc')
    title = iteration_label(metrics)
    if test_auc is not None and np.isfinite(test_auc):
      title += f'  (AUC {test_auc:.2f})'
    ax.set_title(title, fontsize='medium')
    if scores.size == 0:
      _empty_panel(ax, 'no test scores')
      continue
    threshold = (metrics.get('threshold') or {}).get('value')
    has_threshold = threshold is not None and np.isfinite(threshold)
    # The threshold joins the bin range so the line is always inside the panel.
    span = np.append(scores, threshold) if has_threshold else scores
    edges = np.histogram_bin_edges(span, bins=bins)
    for cls, color in ((0, NORMAL_COLOR), (1, ABNORMAL_COLOR)):
      # One filled polygon plus an outline per class instead of a patch per bar: the outline keeps
      # each class readable where they overlap, and 2 artists draw far faster than 2 x bins.
      ax.hist(scores[labels == cls], bins=edges, histtype='stepfilled', color=color, alpha=0.35)
      ax.hist(scores[labels == cls], bins=edges, histtype='step', color=color, linewidth=1.3)
    if has_threshold:
      ax.axvline(threshold, color=THRESHOLD_COLOR, ls='--', lw=1.0)
    ax.grid(True, axis='y', alpha=0.3)
    ax.tick_params(labelsize='small')
    # Five panels a row leave room for about four tick labels of a score like 0.0125.
    ax.xaxis.set_major_locator(MaxNLocator(4))
    drew_any = True
  for ax in axes[len(metrics_list) :]:
    ax.set_visible(False)
  if not metrics_list:
    axes[0].set_visible(True)
    _empty_panel(axes[0], 'no iterations')
  for ax in axes[::cols]:
    ax.set_ylabel('images')
  for ax in axes[(rows - 1) * cols :]:
    ax.set_xlabel('test anomaly score')
  if drew_any:
    handles = [
      Patch(facecolor=(*to_rgb(NORMAL_COLOR), 0.35), edgecolor=NORMAL_COLOR),
      Patch(facecolor=(*to_rgb(ABNORMAL_COLOR), 0.35), edgecolor=ABNORMAL_COLOR),
      _threshold_handle(),
    ]
    fig.legend(
      handles,
      ['normal', 'abnormal', 'threshold (from validation)'],
      loc='outside lower center',
      ncols=3 if cols >= 2 else 1,  # one panel: too narrow for one row
      frameon=False,
    )
  fig.suptitle('Test anomaly scores per iteration')
  return save_png(fig, path)


# A run's figures (written with its summary), and the file beside them that says what they were
# drawn from: the report copies them instead of drawing them again when that is what it draws.
RUN_FIGURES = ('training_curves.png', 'threshold_selection.png', 'score_histograms.png')
DRAWN_FROM = '.drawn_from.json'


def drawn_from(metrics_paths: Sequence[str]) -> dict:
  """What figures of the iterations whose metrics.json files are `metrics_paths` (in order) are
  drawn from: `io.files_digest` of those files, and of the code that draws them (this module
  and the threshold curve's) with matplotlib's version. Equal for equal figures; a value is
  None where a file cannot be read."""
  import matplotlib

  code = [(os.path.basename(m), m) for m in (__file__, metrics_lib.__file__)]
  return {
    'metrics': io.files_digest([(str(k), p) for k, p in enumerate(metrics_paths)]),
    'code': io.files_digest(code, matplotlib.__version__),
  }


def write_run_figures(
  metrics_list: Sequence[dict], outdir, source: dict | None = None
) -> list[str]:
  """Writes a run's figures under `outdir` with fixed names (`RUN_FIGURES`).

  `training_curves.png` (`plot_training_curves`), `threshold_selection.png`
  (`plot_threshold_selection_grid`: every iteration, since each chose its own threshold) and
  `score_histograms.png` (`plot_score_histograms`). `source`, `drawn_from` of the metrics.json
  files that `metrics_list` holds, is written beside them (`DRAWN_FROM`), for the report.

  Returns:
    The three paths, in that order.
  """
  outdir = os.fspath(outdir)
  drawn_path = os.path.join(outdir, DRAWN_FROM)
  if os.path.exists(drawn_path):  # until all three are drawn, they show nothing known
    os.remove(drawn_path)
  plots = (plot_training_curves, plot_threshold_selection_grid, plot_score_histograms)
  paths = [
    plot(metrics_list, os.path.join(outdir, name))
    for plot, name in zip(plots, RUN_FIGURES, strict=True)
  ]
  if source is not None:
    io.write_json(drawn_path, source)
  return paths


def plot_score_parts(metrics: dict, path, bins: int = 20) -> str:
  """Test score histograms of each part of a composite score (f-AnoGAN: image and feature
  residual), normal vs abnormal, beside the total score with its threshold; one iteration.

  Args:
    metrics: one iteration's metrics dict with 'test_score_parts': {part name: per-image list}.
    path: where the PNG goes.
    bins: number of bins per panel.

  Returns:
    `path` as a string.
  """
  parts = dict(metrics.get('test_score_parts') or {})
  labels = _floats(metrics.get('test_labels'))
  panels = [(f'{name} part', _floats(values), None) for name, values in parts.items()]
  threshold = (metrics.get('threshold') or {}).get('value')
  panels.append(('total score', _floats(metrics.get('test_scores')), threshold))
  fig = Figure(figsize=(3.3 * len(panels), 3.0), layout='constrained')
  axes = np.atleast_1d(fig.subplots(1, len(panels)))
  for ax, (name, scores, line) in zip(axes, panels, strict=True):
    n = min(len(scores), len(labels))
    s, y = scores[:n], labels[:n]
    ax.set_title(name, fontsize='medium')
    if not np.isfinite(s).any():
      _empty_panel(ax, 'no scores')
      continue
    keep = np.isfinite(s)
    span = np.append(s[keep], line) if line is not None else s[keep]
    edges = np.histogram_bin_edges(span, bins=bins)
    for cls, color in ((0, NORMAL_COLOR), (1, ABNORMAL_COLOR)):
      ax.hist(s[keep & (y == cls)], bins=edges, histtype='stepfilled', color=color, alpha=0.35)
      ax.hist(s[keep & (y == cls)], bins=edges, histtype='step', color=color, linewidth=1.3)
    if line is not None:
      ax.axvline(line, color=THRESHOLD_COLOR, ls='--', lw=1.0)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.set_xlabel('test score')
  axes[0].set_ylabel('images')
  fig.legend(
    [
      Patch(facecolor=(*to_rgb(NORMAL_COLOR), 0.35), edgecolor=NORMAL_COLOR),
      Patch(facecolor=(*to_rgb(ABNORMAL_COLOR), 0.35), edgecolor=ABNORMAL_COLOR),
      _threshold_handle(),
    ],
    ['normal', 'abnormal', 'threshold'],
    loc='outside lower center',
    ncols=3,
    frameon=False,
  )
  fig.suptitle(f'Parts of the test score ({iteration_label(metrics)})')
  return save_png(fig, path)
