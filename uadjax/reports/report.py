"""The report of a finished run: figures and `report.md` in `RUN/report/`, without retraining.

Attributes:
  write_report: draws everything a run's files allow and writes `report.md`.
  representative_iteration: the iteration whose test AUC is the median (the image figures
    show one iteration's model).

What is drawn, from what:
  training_curves.png       metrics.json histories (all iterations, selected epochs marked)
  threshold_selection.png   metrics.json validation scores and thresholds
  score_histograms.png      metrics.json test scores and thresholds
  score_parts.png           metrics.json 'test_score_parts' (f-AnoGAN), when present
  examples.png              one iteration's checkpoint on its test images (section 4.5)
  anomaly_maps.png          the same, abnormal test images only (section 4.6)
  extremes.png              the same, per class the lowest- and highest-scored test image
  cams.png, cams/           a classifier's class-activation maps (config.cam), when present
  samples.png               the selected generator's samples (f-AnoGAN: gan/iter_XX/samples)
The image figures need the run's data (config.data); when it cannot be loaded they are left out
and report.md says why.

A figure newer than every file it is drawn from is kept, not drawn again (a rerun of a finished
run, or `experiments.report` twice): the curves and histograms read the iterations'
metrics.json, the image figures the chosen iteration's metrics.json, its checkpoint and
config.json (their captions are kept in `report/.image_sections.json`). The curves and
histograms are copied from the run's `figures/` where those were drawn from the same
metrics.json files with the same drawing code (`figures/.drawn_from.json`). Delete the report
folder to draw everything again. The log says how long the report took.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time

import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from uadjax import config as config_lib
from uadjax import data, families, inference, io
from uadjax.evaluation import metrics as metrics_lib
from uadjax.evaluation import segmentation
from uadjax.reports import figures, images, tables
from uadjax.run.layout import RunDir


def representative_iteration(metrics_list: list[dict]) -> dict:
  """The iteration whose test AUC is closest to the median of the run (the lower one on ties)."""
  aucs = np.array([(m.get('test') or {}).get('auc', np.nan) for m in metrics_list], np.float64)
  if not np.isfinite(aucs).any():
    return metrics_list[0]
  median = np.nanmedian(aucs)
  return metrics_list[int(np.nanargmin(np.abs(aucs - median)))]


def _test_images(config, metrics: dict, size: int | None = None):
  """The iteration's test images (in metrics.json order) at the config's image size (or
  `size`), and their masks if known."""
  data_config = config.data
  if size is not None and size != int(config.data.image_size):
    data_config = ml_collections.ConfigDict({**config.data.to_dict(), 'image_size': size})
  dataset = data.load(data_config)
  index = {name: i for i, name in enumerate(dataset.names)}
  missing = [n for n in metrics['test_names'] if n not in index]
  if missing:
    raise data.DataError(f'test images {missing[:3]} are not in the data set of the config.')
  idx = np.array([index[n] for n in metrics['test_names']])
  masks = None if dataset.masks is None else dataset.masks[idx]
  return dataset.images[idx], masks


def _samples(run: RunDir, iteration: int, phases=()):
  """A GAN run's saved samples, or None: the selected generator's grid (selected.png) where a
  phase wrote one (f-AnoGAN: gan/iter_XX/samples), else the PNG files or samples.npy found."""
  for folder in run.sample_folders(iteration, phases):
    if not os.path.isdir(folder):
      continue
    npy = os.path.join(folder, 'samples.npy')
    if os.path.isfile(npy):
      x = np.load(npy).astype(np.float32)
      lo = x.min(axis=tuple(range(1, x.ndim)), keepdims=True)
      hi = x.max(axis=tuple(range(1, x.ndim)), keepdims=True)
      return (x - lo) / np.maximum(hi - lo, 1e-8), folder
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith('.png'))
    if 'selected.png' in files:
      files = ['selected.png']
    if files:
      arrays = []
      for f in files[:64]:
        with Image.open(os.path.join(folder, f)) as im:
          arrays.append(np.asarray(im.convert('RGB'), np.float32) / 255.0)
      return arrays, folder
  return None


def pick_cam_images(labels, scores, k: int) -> np.ndarray:
  """Up to k test images for the CAM figure: the most confident abnormal and normal ones in
  turn (highest and lowest scores), so both classes are shown; 0 = all, in test order."""
  labels, scores = np.asarray(labels), np.asarray(scores)
  if not k or k >= len(labels):
    return np.arange(len(labels))
  abnormal = np.flatnonzero(labels == 1)[np.argsort(-scores[labels == 1], kind='stable')]
  normal = np.flatnonzero(labels == 0)[np.argsort(scores[labels == 0], kind='stable')]
  order = [x for pair in zip(abnormal, normal, strict=False) for x in pair]
  order += [x for x in (*abnormal[len(normal) :], *normal[len(abnormal) :])]
  return np.array(order[:k], int)


def _cam_section(config, model, test_images, labels, scores, names, outdir):
  """Computes every configured CAM method on the chosen test images; writes one overlay PNG per
  image and method (outdir/cams/METHOD/NAME.png) and the grid figure. Returns (path, line)."""
  c = config.cam
  idx = pick_cam_images(labels, scores, int(c.max_images))
  cams = {}
  for method in c.methods:
    cams[method] = model.class_maps(test_images[idx], method, scorecam_batch=int(c.scorecam_batch))
    logging.info('CAM %s: %d images.', method, len(idx))
  shown = test_images[idx]
  for method, maps in cams.items():
    folder = os.path.join(outdir, 'cams', method)
    os.makedirs(folder, exist_ok=True)
    for k, i in enumerate(idx):
      stem = os.path.splitext(os.path.basename(names[i]))[0].replace(' ', '_')
      overlay = images.blend_heatmap(images.display(shown[k]), maps[k])
      Image.fromarray(overlay).save(os.path.join(folder, f'{stem}.png'))
  truth = {0: 'normal', 1: 'abnormal'}
  captions = [
    f'{truth[int(labels[i])]}, P(1) {scores[i]:.2f}'
    + (' (wrong)' if (scores[i] >= model.threshold) != bool(labels[i]) else '')
    for i in idx
  ]
  path = images.plot_cams(
    shown, cams, os.path.join(outdir, 'cams.png'), [names[i] for i in idx], captions
  )
  line = (
    f'Class-activation maps for class 1 of {len(idx)} test images (most confident abnormal and '
    f'normal in turn), methods {", ".join(cams)}; target layer: the last feature block '
    '(FullGrad: every layer). One overlay per image and method in cams/METHOD/.'
  )
  return path, line


def _newest_mtime(paths) -> float:
  """The latest modification time of the files at `paths` (folders: every file inside)."""
  newest = 0.0
  for path in paths:
    if os.path.isdir(path):
      for root, _, files in os.walk(path):
        for f in files:
          newest = max(newest, os.path.getmtime(os.path.join(root, f)))
    elif os.path.exists(path):
      newest = max(newest, os.path.getmtime(path))
  return newest


def _up_to_date(paths, inputs_mtime: float) -> bool:
  """Whether every file at `paths` exists and is at least as new as the inputs."""
  return all(os.path.exists(p) and os.path.getmtime(p) >= inputs_mtime for p in paths)


_IMAGE_FIGURES = ('examples.png', 'anomaly_maps.png', 'extremes.png')
_IMAGE_SECTIONS = '.image_sections.json'


def _run_figures_match(run: RunDir, metrics_list) -> bool:
  """Whether the run's own figures (`figures.RUN_FIGURES`, written with its summary) were drawn
  from what the report's would be: the same metrics.json files, byte for byte and in the same
  order, and the same drawing code (`figures.drawn_from`)."""
  try:
    recorded = io.read_json(os.path.join(run.figures, figures.DRAWN_FROM))
  except (OSError, ValueError):
    return False
  current = figures.drawn_from([run.metrics(int(m['iteration'])) for m in metrics_list])
  return None not in current.values() and recorded == current


def _schedule(config) -> str:
  """How the run's models were made and chosen, for the report's first line."""
  if not config_lib.trains(config):
    return f'fitted in one pass (no epochs), candidate selection by {config.cv.selection}'
  return (
    f'{config.train.epochs} epochs, validation every {config.cv.val_every}, checkpoint '
    f'selection by {config.cv.selection}'
  )


@dataclasses.dataclass
class _Report:
  """What the section writers share: the run, the chosen iteration, the output folder, the
  sections and notes written so far and the figures' counts (drawn, kept, copied)."""

  workdir: str
  config: ml_collections.ConfigDict
  run: RunDir
  outdir: str
  finished: dict  # {iteration: metrics}
  chosen: dict  # the metrics of the iteration whose model the image figures show
  why: str  # why that iteration: 'the median test AUC' or 'chosen'
  sections: list = dataclasses.field(default_factory=list)  # (heading, file name, line)
  notes: list = dataclasses.field(default_factory=list)
  counts: dict = dataclasses.field(default_factory=lambda: {'drawn': 0, 'kept': 0, 'copied': 0})

  @property
  def metrics_list(self) -> list[dict]:
    return list(self.finished.values())

  @property
  def iteration(self) -> int:
    return int(self.chosen['iteration'])

  @property
  def label(self) -> str:
    """'3 (g/b 1/0)': the chosen iteration, with its normal fold and abnormal half."""
    label = str(self.iteration)
    if self.chosen.get('normal_fold') is not None:
      label += f' (g/b {self.chosen.get("normal_fold")}/{self.chosen.get("abnormal_half")})'
    return label

  @property
  def model_name(self) -> str:
    return families.display_name(self.config.get('model_name'))

  def add(self, heading: str, path: str | None, line: str) -> None:
    """A section: its heading, its figure (None: none) and one line of explanation."""
    self.sections.append((heading, os.path.basename(path) if path else None, line))

  def draw(self, name: str, inputs_mtime: float, plot) -> str:
    """`plot(path)` unless the figure at outdir/name is newer than its inputs, or the run's
    own copy of it shows the same (`_run_figures_match`): then it is kept or copied."""
    path = os.path.join(self.outdir, name)
    if _up_to_date([path], inputs_mtime):
      self.counts['kept'] += 1
      return path
    source = os.path.join(self.run.figures, name)
    if self._copy_run_figures and name in figures.RUN_FIGURES and os.path.isfile(source):
      shutil.copyfile(source, path)
      self.counts['copied'] += 1
      return path
    self.counts['drawn'] += 1
    return plot(path)

  @functools.cached_property
  def _copy_run_figures(self) -> bool:
    # The run's own curves and histograms are copied where they show the same (not onto
    # themselves).
    return os.path.abspath(self.outdir) != os.path.abspath(self.run.figures) and (
      _run_figures_match(self.run, self.metrics_list)
    )


def _open_report(workdir: str, outdir: str | None, iteration: int | None) -> _Report:
  """The report's context: the run's config and finished iterations, the chosen iteration."""
  config = inference.load_config(workdir)
  finished = inference.finished_iterations(workdir)
  if not finished:
    raise inference.RunError(f'{workdir}: no finished iteration (iter_XX/metrics.json) to report.')
  run = RunDir(workdir)
  outdir = outdir or run.report
  os.makedirs(outdir, exist_ok=True)
  if iteration is None:
    chosen = representative_iteration(list(finished.values()))
  elif iteration in finished:
    chosen = finished[iteration]
  else:
    raise inference.RunError(
      f'{workdir}: iteration {iteration} is not finished ({list(finished)}).'
    )
  why = 'the median test AUC' if iteration is None else 'chosen'
  return _Report(workdir, config, run, outdir, finished, chosen, why)


def _curve_sections(report: _Report) -> None:
  """Training curves, threshold selection, test-score histograms and the score's parts: drawn
  from the iterations' metrics.json files."""
  r, metrics_list, chosen = report, report.metrics_list, report.chosen
  metrics_mtime = _newest_mtime([r.run.metrics(i) for i in sorted(r.finished)])
  r.add(
    'Training',
    r.draw(
      'training_curves.png',
      metrics_mtime,
      lambda path: figures.plot_training_curves(metrics_list, path),
    ),
    'Left: mean training loss per epoch (log scale), one line per iteration (normal fold g / '
    'abnormal half b). Right: validation AUC at every validation; the dot is the epoch whose '
    'checkpoint was kept and tested.',
  )
  r.add(
    'Threshold selection',
    r.draw(
      'threshold_selection.png',
      metrics_mtime,
      lambda path: figures.plot_threshold_selection_grid(metrics_list, path),
    ),
    'Precision, recall and F1 of "score >= threshold" on each iteration\'s validation set; the '
    f'dashed line is the chosen threshold ({chosen["threshold"]["method"]}).',
  )
  r.add(
    'Test scores',
    r.draw(
      'score_histograms.png',
      metrics_mtime,
      lambda path: figures.plot_score_histograms(metrics_list, path),
    ),
    'Test anomaly scores of normal (blue) and abnormal (red) images per iteration, with the '
    'threshold chosen on validation (dashed); the test AUC is in each title.',
  )
  if chosen.get('test_score_parts'):
    r.add(
      'Parts of the score',
      r.draw(
        'score_parts.png',
        _newest_mtime([r.run.metrics(r.iteration)]),
        lambda path: figures.plot_score_parts(chosen, path),
      ),
      f'The parts of the test score ({", ".join(chosen["test_score_parts"])}) and the total, '
      f'normal vs abnormal, iteration {r.label}.',
    )


def _image_sections(report: _Report) -> None:
  """The image figures of the chosen iteration's model: all drawn again or all kept, with
  their captions (which hold the restored scores' counts) kept beside them in
  `_IMAGE_SECTIONS`."""
  r = report
  inputs = _newest_mtime([r.run.config, r.run.metrics(r.iteration), r.run.best(r.iteration)])
  cache_path = os.path.join(r.outdir, _IMAGE_SECTIONS)
  cached = io.read_json(cache_path) if os.path.isfile(cache_path) else {}
  kept = (
    bool(cached.get('sections'))
    and cached.get('iteration') == r.iteration
    and cached.get('why') == r.why
    and _up_to_date([cache_path], inputs)
    and _up_to_date(
      [os.path.join(r.outdir, name) for _, name, _ in cached.get('sections', []) if name],
      inputs,
    )
  )
  if kept:
    sections, notes = [tuple(x) for x in cached['sections']], list(cached['notes'])
    r.counts['kept'] += sum(1 for _, name, _ in sections if name)
  else:
    drawn = _Report(r.workdir, r.config, r.run, r.outdir, r.finished, r.chosen, r.why)
    _draw_image_figures(drawn)
    sections, notes = drawn.sections, drawn.notes
    r.counts['drawn'] += sum(1 for _, name, _ in sections if name)
    if sections:  # not when they were left out: the data may be there next time
      io.write_json(
        cache_path,
        {'iteration': r.iteration, 'why': r.why, 'sections': sections, 'notes': notes},
      )
  r.sections += sections
  r.notes += notes


@dataclasses.dataclass
class _ScoredTestSet:
  """The chosen iteration's model and its test images, scored once for every image figure."""

  model: object
  images: np.ndarray
  masks: np.ndarray | None
  labels: np.ndarray
  names: list
  scores: np.ndarray
  maps: np.ndarray
  reconstructions: np.ndarray | None


def _model_and_test_images(report: _Report) -> tuple:
  """(the chosen iteration's model, its test images, their masks or None, the batch at each
  size a fused run's members take); RunError, DataError or FileNotFoundError when the model or
  the data cannot be had."""
  config, chosen = report.config, report.chosen
  model = inference.load_models(report.workdir, [report.iteration], config)[0]
  test_images, masks = _test_images(config, chosen)
  # A fused run's members may take other sizes: the same images at each.
  others = [s for s in model.image_sizes if s != test_images.shape[1]]
  batch = test_images
  if others:
    batch = {test_images.shape[1]: test_images}
    batch.update({s: _test_images(config, chosen, s)[0] for s in others})
  return model, test_images, masks, batch


def _scored_test_set(report: _Report, model, test_images, masks, batch) -> _ScoredTestSet:
  """Scores the test images with the model; a classifier's maps are its Grad-CAM for class 1.
  Notes what the reader should know."""
  chosen = report.chosen
  out = model.outputs(batch)  # scores, maps and reconstructions in one pass
  scores, maps = out['scores'], out['maps']
  if model.supervised:
    # A classifier has no residual: its map in these figures is Grad-CAM for class 1.
    maps = model.class_maps(test_images, 'gradcam')
    report.notes.append(
      'A classifier has no reconstruction: the maps of the image figures are its Grad-CAM '
      'for class 1 (abnormal), and "score" is P(class 1).'
    )
  saved = np.asarray(chosen['test_scores'], np.float64)
  drift = float(np.max(np.abs(scores - saved) / np.maximum(np.abs(saved), 1e-12)))
  if drift > 1e-3:
    report.notes.append(
      f'The restored checkpoint scores the test images up to {drift:.1%} away from '
      'metrics.json (another device or dtype); the figures use the restored scores.'
    )
  return _ScoredTestSet(
    model=model,
    images=test_images,
    masks=masks,
    labels=np.asarray(chosen['test_labels']),
    names=chosen['test_names'],
    scores=scores,
    maps=maps,
    reconstructions=out.get('reconstructions'),
  )


def _draw_image_figures(report: _Report) -> None:
  """Examples by outcome, anomaly maps, extremes, class-activation maps and the pixel AUROC
  of the chosen iteration's model; left out, with a note, when the data cannot be read."""
  r = report
  try:
    loaded = _model_and_test_images(r)
  except (inference.RunError, data.DataError, FileNotFoundError) as e:
    logging.warning('Report without image figures: %s', e)
    r.notes.append(f'Image figures left out: {e}')
    return
  s = _scored_test_set(r, *loaded)
  _outcome_sections(r, s)
  if s.model.supervised and r.config.get('cam'):
    path, line = _cam_section(r.config, s.model, s.images, s.labels, s.scores, s.names, r.outdir)
    r.add('Class-activation maps', path, line)
  if s.masks is not None:
    abnormal = np.flatnonzero(s.labels == 1)
    pixel_auc = segmentation.pixel_auroc(s.maps[abnormal], s.masks[abnormal])
    if not np.isnan(pixel_auc):
      r.notes.append(
        f'Pixel-level AUROC of the anomaly maps against the true lesion masks (abnormal test '
        f'images, iteration {r.label}): {pixel_auc:.3f}.'
      )


def _outcome_sections(r: _Report, s: _ScoredTestSet) -> None:
  """Test images by outcome, the abnormal ones' anomaly maps, and each class's extremes."""
  threshold, model_name, label = s.model.threshold, r.model_name, r.label
  # What was kept: a trained family's epoch, a fitted family's candidate (a fused run: none).
  kept = r.chosen.get('selected_candidate')
  kept = f', epoch {s.model.epoch}' if s.model.epoch is not None else f', {kept}' if kept else ''
  counts = metrics_lib.confusion(s.scores, s.labels, threshold)
  r.add(
    'Test images by outcome',
    images.plot_examples(
      s.images,
      s.reconstructions,
      s.maps,
      s.labels,
      s.scores,
      threshold,
      os.path.join(r.outdir, 'examples.png'),
      names=s.names,
      title=f'{model_name}, iteration {label}{kept}',
    ),
    f'Iteration {label} ({r.why}){kept}: per outcome (TN {counts["tn"]}, '
    f'FP {counts["fp"]}, FN {counts["fn"]}, TP {counts["tp"]}) the most confident images '
    '(errors: the furthest on the wrong side), with reconstruction and squared residual.',
  )
  abnormal = np.flatnonzero(s.labels == 1)
  r.add(
    'Anomaly maps',
    images.plot_anomaly_maps(
      s.images[abnormal],
      s.maps[abnormal],
      s.scores[abnormal],
      threshold,
      os.path.join(r.outdir, 'anomaly_maps.png'),
      masks=None if s.masks is None else s.masks[abnormal],
      names=[s.names[k] for k in abnormal],
      title=f'{model_name}, iteration {label}: abnormal test images, highest score first',
    ),
    'The residual map over every abnormal test image, highest score first; red titles are '
    'images the threshold misses'
    + ('; the cyan outline is the true lesion.' if s.masks is not None else '.'),
  )
  r.add(
    'Lowest and highest scores',
    images.plot_extremes(
      s.images,
      s.reconstructions,
      s.maps,
      s.labels,
      s.scores,
      os.path.join(r.outdir, 'extremes.png'),
      names=s.names,
      title=f'{model_name}, iteration {label}',
    ),
    'For normal and for abnormal test images, the one with the lowest and the one with the '
    'highest score'
    + (', with reconstruction and difference map.' if s.reconstructions is not None else '.'),
  )


def _sample_section(report: _Report) -> None:
  """The selected generator's samples (a family with a GAN phase: f-AnoGAN)."""
  r = report
  family = families.FAMILIES.get(r.config.model_name)  # none for a fused run
  samples = _samples(r.run, r.iteration, [p.name for p in family.phases] if family else [])
  if samples is None:
    return
  arrays, folder = samples
  r.add(
    'Generator samples',
    r.draw(
      'samples.png',
      _newest_mtime([folder]),
      lambda path: images.plot_image_grid(arrays, path, title='samples of the selected generator'),
    ),
    f'Samples of the selected generator ({os.path.relpath(folder, r.workdir)}).',
  )


# The report's sections, in order: each writer adds its sections and notes to the report.
SECTION_WRITERS = (_curve_sections, _image_sections, _sample_section)


def _markdown(report: _Report) -> str:
  """report.md: how the run was made, its results table beside the study's, the sections."""
  r, config, metrics_list = report, report.config, report.metrics_list
  if os.path.isfile(r.run.summary_json):
    summary = io.read_json(r.run.summary_json)
  else:
    summary = {
      'model': config.get('model_name'),
      'n_iterations': len(metrics_list),
      'metrics': metrics_lib.summarize([m['test'] for m in metrics_list]),
    }
  study = tables.study_row_for(config)
  # `description`: how a run that did not train was made (a fused run), instead of its schedule.
  how = config.get('description') or f'{_schedule(config)}, threshold by {config.cv.threshold}'
  lines = [
    f'# {r.model_name} on {config.data.source} data: report of `{os.path.abspath(r.workdir)}`',
    '',
    f'{len(metrics_list)} iterations, {how.rstrip(".")}, images '
    f'{config.data.image_size}x{config.data.image_size}.',
    '',
    tables.summary_markdown(summary, study_model=study, per_iteration=metrics_list).rstrip(),
    '',
  ]
  if config.get('study_note'):
    lines += [f'Note: {config.study_note}.', '']
  if summary.get('extra_test'):
    lines += [tables.extra_test_markdown(summary).strip(), '']
  for heading, name, line in r.sections:
    lines += [f'## {heading}', '', line, '', f'![{heading}]({name})', '']
  if r.notes:
    lines += ['## Notes', ''] + [f'- {n}' for n in r.notes] + ['']
  return '\n'.join(lines)


def write_report(workdir: str, outdir: str | None = None, iteration: int | None = None) -> str:
  """Writes the figures and `report.md` of a finished (or partly finished) run.

  The first line says how the run was made: its schedule, or the config's `description` where
  it has one (a run that did not train: a fused run, `uadjax.ensemble`).

  Args:
    workdir: the run folder (config.json, iter_XX/metrics.json, checkpoints).
    outdir: where to write (default `workdir/report`).
    iteration: the iteration whose model the image figures show (default: the median test AUC).

  Returns:
    The path of report.md.

  Raises:
    inference.RunError: the workdir has no config or no finished iteration.
  """
  start = time.perf_counter()
  report = _open_report(workdir, outdir, iteration)
  for write_sections in SECTION_WRITERS:
    write_sections(report)
  path = io.write_text(os.path.join(report.outdir, 'report.md'), _markdown(report))
  logging.info(
    'Report %s in %.1f s: %d figures drawn, %d kept (newer than what they show), %d copied '
    "from the run's figures.",
    path,
    time.perf_counter() - start,
    report.counts['drawn'],
    report.counts['kept'],
    report.counts['copied'],
  )
  return path
