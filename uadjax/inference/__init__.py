"""A finished run's models, restored from its workdir, to score and reconstruct new images.

Attributes:
  RunError: a workdir that cannot give models (no config, no checkpoints, another image size).
  load_config: the run's `config.json` as a ConfigDict.
  finished_iterations: the iterations with a `metrics.json` of test metrics, and those metrics.
  diverged_iterations: the iterations whose `metrics.json` records a divergence.
  IterationModel: one iteration's selected variables and threshold, with `outputs`, `score`,
    `reconstruct` and (classifiers) `class_maps` on numpy batches.
  EnsembleModel: one iteration of a fused run (`uadjax.ensemble`), with the same interface.
  load_models: the model of every (or some) finished iteration of a run, fused or not.

Modules: `folder` (what a run folder says), `iteration` (a run's own checkpoints), `fused` (a
fused run's members and rule). Nothing here trains or writes: the reports and `uadjax.predict`
build on it.
"""

from __future__ import annotations

from uadjax.inference.folder import (
  RunError,
  diverged_iterations,
  finished_iterations,
  load_config,
)
from uadjax.inference.fused import EnsembleModel, is_ensemble, load_fused_models
from uadjax.inference.iteration import IterationModel, load_iteration_models

__all__ = [
  'EnsembleModel',
  'IterationModel',
  'RunError',
  'diverged_iterations',
  'finished_iterations',
  'load_config',
  'load_models',
]


def load_models(workdir: str, iterations=None, config=None) -> list:
  """The selected model of each finished iteration of a run: `IterationModel`s, or for a fused
  run `EnsembleModel`s (which score, map and threshold as these do).

  Args:
    workdir: the run folder.
    iterations: indices to load (None: every finished iteration).
    config: the run's config (read from the workdir if None).

  Raises:
    RunError: no iteration has a checkpoint; an asked-for iteration has none; a checkpoint's
      variables or image shape differ from what the run's config builds; a fused run's member
      is gone or changed since the fusion.
  """
  config = config or load_config(workdir)
  if is_ensemble(config):
    # A fused run has no checkpoints of its own: its members' models and its saved rule.
    return load_fused_models(workdir, iterations, config)
  return load_iteration_models(workdir, iterations, config)
