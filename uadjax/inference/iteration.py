"""One iteration's selected model of a finished (trained or fitted) run, to score new images.

Attributes:
  IterationModel: one iteration's selected variables and threshold, with `outputs`, `score`,
    `reconstruct` and (classifiers) `class_maps` on numpy batches.
  load_iteration_models: the `IterationModel` of every (or some) finished iteration of a run
    that has checkpoints of its own (a fused run's: `uadjax.inference.fused`).
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from uadjax import data
from uadjax.evaluation import cam as cam_lib
from uadjax.families import make_task
from uadjax.inference.folder import RunError, finished_iterations
from uadjax.run import checkpoint
from uadjax.run.compiler import SCORING, task_jit
from uadjax.run.layout import RunDir
from uadjax.train.loop import outputs_fn

# Entries of a 'best' checkpoint that are bookkeeping, not model variables.
_NOT_VARIABLES = ('epoch', 'metric', 'image_shape')


@dataclasses.dataclass
class IterationModel:
  """One iteration's selected checkpoint and validation threshold.

  Attributes:
    iteration: the iteration's index.
    task: the task (model + score function) built from the run's config.
    variables: the selected variables ({'params', 'batch_stats', ...}).
    threshold: the threshold chosen on validation (`score >= threshold` is abnormal).
    epoch: the selected epoch (None for a fitted family).
    image_shape: (h, w, c) the model was trained on.
    compiled: jitted functions shared by the iterations of a run (one compilation for all).
    batch: images per compiled call; the last batch is padded, so one compilation serves all.
      `load_models` sets the run's `train.score_batch`: the program is then the one the run
      scored its test sets with (`uadjax.train.loop.score_all`), read from the persistent
      compilation cache instead of compiled again.
  """

  iteration: int
  task: object
  variables: dict
  threshold: float
  epoch: int | None
  image_shape: tuple
  compiled: dict
  batch: int = 32

  def _batched(self, fn, images: np.ndarray, *per_image, batch: int | None = None):
    """fn(variables, images, *per_image) over chunks of `batch` (default `self.batch`) images;
    the last chunk is padded with its first image, so one compilation serves every call."""
    images = np.asarray(images, np.float32)
    if images.shape[1:] != tuple(self.image_shape):
      raise RunError(
        f'Images of shape {images.shape[1:]} for a model trained on {tuple(self.image_shape)}.'
      )
    batch = batch or self.batch
    outs = []
    for start in range(0, len(images), batch):
      chunks = [a[start : start + batch] for a in (images, *per_image)]
      n = len(chunks[0])
      padded = [jax.device_put(np.concatenate([c, np.repeat(c[:1], batch - n, 0)])) for c in chunks]
      out = jax.tree.map(np.asarray, fn(self.variables, *padded))
      outs.append(jax.tree.map(lambda x: x[:n], out))  # noqa: B023 (used at once)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)

  def outputs(self, images: np.ndarray) -> dict:
    """{'scores' (n,), 'maps' (n, h, w) and, when the model has one, 'reconstructions'
    (n, h, w, c)}, float32, of (n, h, w, c) preprocessed images, from one pass of the model."""
    return self._batched(self.compiled['outputs'], images)

  def score(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Anomaly scores (n,) and maps (n, h, w), float32, of (n, h, w, c) preprocessed images."""
    out = self.outputs(images)
    return out['scores'], out['maps']

  @property
  def image_sizes(self) -> tuple[int, ...]:
    """The image sizes the model takes (one; a fused run's may take several)."""
    return (int(self.image_shape[0]),)

  @property
  def can_reconstruct(self) -> bool:
    """Whether the model has a reconstruction to show (the autoencoders, f-AnoGAN's G(E(x)))."""
    return self.task.reconstructs

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    """Reconstructions (n, h, w, c) float32 of preprocessed images."""
    if not self.can_reconstruct:
      raise RunError('This model has no reconstruction (a classifier scores its images).')
    return self.outputs(images)['reconstructions']

  @property
  def supervised(self) -> bool:
    """Whether the model is a classifier (its score is P(class 1), its maps are CAMs)."""
    return self.task.supervised

  def class_maps(
    self,
    images: np.ndarray,
    method: str = 'gradcam',
    targets=None,
    *,
    chunk: int = 4,
    scorecam_batch: int = 32,
  ) -> np.ndarray:
    """A classifier's class-activation maps (n, h, w) in [0, 1] for class 1 (or `targets`).

    `method` is one of `uadjax.evaluation.cam.METHODS`; `chunk` images per compiled call bound
    the memory of the gradient and Score-CAM passes (the last chunk is padded: one compilation).
    """
    if not self.supervised:
      raise RunError('class_maps needs a classifier run; this model scores reconstructions.')
    key = ('cam', method, scorecam_batch)
    if key not in self.compiled:
      fns = cam_lib.flax_fns(self.task.model)

      def maps(variables, images, targets):
        v = {k: variables[k] for k in ('params', 'batch_stats') if k in variables}
        return cam_lib.cam(
          method, fns, v, self.task.inputs(images), targets, scorecam_batch=scorecam_batch
        )

      self.compiled[key] = task_jit(maps, self.task, SCORING)
    targets = np.ones(len(images), np.int32) if targets is None else np.asarray(targets, np.int32)
    return self._batched(self.compiled[key], images, targets, batch=chunk)


def _selected_epoch(saved: dict, metrics: dict) -> int | None:
  """The checkpoint's epoch (None for a fitted family, which has none)."""
  epoch = saved.get('epoch', metrics.get('selected_epoch'))
  return None if epoch is None else int(epoch)


def _shapes(tree) -> dict:
  return {jax.tree_util.keystr(p): tuple(np.shape(x)) for p, x in jax.tree.leaves_with_path(tree)}


def _checkpointed(workdir: str, iterations, metrics: dict) -> list[int]:
  """The asked-for iterations (None: all) that have a metrics.json and a 'best' checkpoint;
  RunError naming the ones that do not."""
  run = RunDir(workdir)
  have = [i for i in metrics if os.path.isdir(run.best(i))]
  if iterations is None:
    iterations = have
  missing = sorted(set(iterations) - set(have))
  if missing:
    raise RunError(
      f'{workdir}: iterations {missing} have no finished checkpoint '
      f'(iter_XX/metrics.json and iter_XX/checkpoints/best); finished: {have}.'
    )
  if not iterations:
    raise RunError(
      f'{workdir}: no finished iteration with a checkpoint (iter_XX/checkpoints/best); '
      'is the run finished?'
    )
  return list(iterations)


def _expected_variables(task, image_shape) -> dict:
  """The variables the config's model has at this image size, without computing them.
  Collections the model has none of are left out: a checkpoint may hold what an older version
  of its task kept there (the intensity baseline's histogram, when it counted epochs), which
  scoring never reads."""
  expected = jax.eval_shape(lambda: task.init(jax.random.PRNGKey(0), image_shape)).variables
  return {k: v for k, v in expected.items() if jax.tree.leaves(v)}


def _restored(path: str, workdir: str, image_shape, expected: dict, size: int) -> tuple:
  """(the checkpoint's dict, its model variables on the device) of the 'best' checkpoint at
  `path`; RunError when its image shape or variables are not those of the run's config."""
  saved = checkpoint.restore(path)
  trained_on = tuple(int(v) for v in np.asarray(saved.get('image_shape', image_shape)))
  if trained_on != image_shape:
    raise RunError(
      f'{path}: trained on images of shape {trained_on}, but the run config '
      f'({workdir}/config.json) preprocesses to {image_shape}; the checkpoint belongs to '
      'another run.'
    )
  # Plain device arrays: restored ones carry a sharding that the compiled program would
  # record, making it another program than the one the run scored with (no cache hit).
  variables = {
    k: jax.device_put(jax.tree.map(np.asarray, v))
    for k, v in saved.items()
    if k not in _NOT_VARIABLES
  }
  common = [k for k in variables if k in expected]
  if 'params' not in common or _shapes({k: variables[k] for k in common}) != _shapes(
    {k: expected[k] for k in common}
  ):
    raise RunError(
      f'{path}: its variables do not fit the model of {workdir}/config.json at '
      f'{size}x{size} (another model or image size).'
    )
  return saved, variables


def load_iteration_models(workdir: str, iterations, config) -> list[IterationModel]:
  """The selected model of each finished iteration of a run with checkpoints of its own.

  Args:
    workdir: the run folder.
    iterations: indices to load (None: every iteration with a metrics.json and a checkpoint).
    config: the run's config (`uadjax.inference.load_config`).

  Raises:
    RunError: no iteration has a checkpoint; an asked-for iteration has none; a checkpoint's
      variables or image shape differ from what the run's config builds.
  """
  metrics = finished_iterations(workdir)
  iterations = _checkpointed(workdir, iterations, metrics)
  if config.get('task') and config.task.get('pretrained'):
    # The checkpoint holds the trained weights: the initial ones need not be read (or exist).
    config = ml_collections.ConfigDict(config.to_dict())
    config.task.pretrained = ''
  task = make_task(config)
  image_shape = data.image_shape(config.data)
  expected = _expected_variables(task, image_shape)
  # One program for scores, maps and reconstructions (their forward pass is shared).
  compiled = {'outputs': task_jit(outputs_fn(task), task, SCORING)}
  batch = int(config.train.get('score_batch', 32))
  models = []
  for i in iterations:
    path = RunDir(workdir).best(i)
    saved, variables = _restored(path, workdir, image_shape, expected, int(config.data.image_size))
    # The frozen collections (a pretrained backbone) are not in the checkpoint: the task's own.
    variables = {**variables, **task.frozen_variables()}
    threshold = (metrics[i].get('threshold') or {}).get('value')
    models.append(
      IterationModel(
        iteration=i,
        task=task,
        variables=variables,
        threshold=float('nan') if threshold is None else float(threshold),
        epoch=_selected_epoch(saved, metrics[i]),
        image_shape=image_shape,
        compiled=compiled,
        batch=batch,
      )
    )
  return models
