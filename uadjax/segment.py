"""Pixel-level scores of finished phantom runs: each run's anomaly maps against the phantoms'
known lesion masks (the SSAE against the CAE); `uadjax.reports.segmentation` draws them.

For each run and each finished iteration, the iteration's selected model maps its test images
(normal and abnormal: healthy pixels are negatives too); the pixel AUROC and the best Dice over
thresholds are computed on that iteration's test pixels, then averaged over iterations
(mean ± population std, like the image-level tables).

Attributes:
  evaluate_run: per-iteration pixel scores of one run (and its test maps, for figures).
  compare_runs: `evaluate_run` for several named runs, on the iterations all have finished.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from uadjax import data, inference
from uadjax.evaluation import segmentation

METRICS = ('pixel_auroc', 'best_dice')


def evaluate_run(workdir: str, iterations=None) -> dict:
  """Pixel AUROC and best Dice of a finished phantom run, per iteration and mean ± std.

  Args:
    workdir: the run folder.
    iterations: the iterations to evaluate (None: every finished one).

  Returns:
    {'model', 'workdir', 'iterations': [{'iteration', 'pixel_auroc', 'best_dice',
    'dice_threshold'}], 'summary': {metric: {'mean', 'std'}}, 'maps': {iteration: (names,
    maps)}} ('maps' is for figures and is not written to JSON).

  Raises:
    ValueError: the run is not on a data set with lesion masks (data.source != 'phantoms').
  """
  config = inference.load_config(workdir)
  dataset = data.load(config.data)
  if dataset.masks is None:
    raise ValueError(f'{workdir}: data.source={config.data.source!r} has no lesion masks.')
  index = {name: i for i, name in enumerate(dataset.names)}
  metrics = inference.finished_iterations(workdir)
  rows, maps_by_iteration = [], {}
  for model in inference.load_models(workdir, iterations, config=config):
    names = metrics[model.iteration]['test_names']
    idx = np.array([index[n] for n in names])
    _, maps = model.score(dataset.images[idx])
    scores = segmentation.segmentation_scores(maps, dataset.masks[idx])
    rows.append({'iteration': model.iteration, **scores})
    maps_by_iteration[model.iteration] = (names, maps)
  summary = {
    m: {'mean': float(np.nanmean(v)), 'std': float(np.nanstd(v))}
    for m in METRICS
    for v in [np.array([r[m] for r in rows], np.float64)]
  }
  return {
    'model': config.model_name,
    'workdir': workdir,
    'iterations': rows,
    'summary': summary,
    'maps': maps_by_iteration,
  }


def compare_runs(runs: Mapping[str, str]) -> dict[str, dict]:
  """{label: evaluate_run(workdir, common)} for {label: workdir}, on the iterations every run
  has finished (same test phantoms for every model)."""
  done = [set(inference.finished_iterations(w)) for w in runs.values()]
  common = sorted(set.intersection(*done))
  if not common:
    raise ValueError(f'The runs {list(runs.values())} have no finished iteration in common.')
  return {label: evaluate_run(workdir, common) for label, workdir in runs.items()}
