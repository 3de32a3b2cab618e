"""A fused run's models: its members' models of each iteration and the saved rule
(`uadjax.ensemble` writes fused runs; here they are read back to score new images).

Attributes:
  EnsembleError: members that cannot be fused or read back; the message names the runs.
  is_ensemble: whether a run's config is a fused run's (the one test of it).
  standardisation: a member's (mean, std) of one iteration's validation normals.
  EnsembleModel: one iteration's fused model, with the `IterationModel` interface that predict
    and the report use.
  images_of_size: the images of one member's size, of an array or {size: array}.
  load_fused_models: the `EnsembleModel` of every (or some) finished iteration of a fused run.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from uadjax import data
from uadjax.inference.folder import RunError, finished_iterations, load_config
from uadjax.inference.iteration import load_iteration_models


class EnsembleError(RunError):
  """Runs that cannot be fused; the message names the runs and what differs."""


def is_ensemble(config) -> bool:
  """Whether `config` (a run's config.json, dict or ConfigDict) is a fused run's."""
  return 'ensemble' in config


def standardisation(val_scores, val_labels) -> tuple[float, float]:
  """(mean, std) of the scores of the validation normals (label 0); std 1 where they all
  scored alike (the scores are then only shifted)."""
  scores = np.asarray(val_scores, np.float64)
  normal = scores[np.asarray(val_labels) == 0]
  if normal.size == 0:
    raise EnsembleError('A validation set without normal images: nothing to standardise on.')
  std = float(np.std(normal))
  return float(np.mean(normal)), std if std > 0 else 1.0


@dataclasses.dataclass
class EnsembleModel:
  """One iteration of a fused run: its members' models and the saved rule. It has the
  interface of `uadjax.inference.IterationModel` that predict and the report use.

  Attributes:
    iteration: the iteration's index.
    models: each member's `IterationModel` of this iteration (weight 0: not loaded).
    weights, means, stds: their weights and the statistics of their validation normals.
    threshold: the threshold chosen on the fused validation scores.
    image_shape: (h, w, c) of the fused maps (the largest of the members' sizes).
    epoch: None (nothing was trained: no epoch was selected).

  Members may take images of other sizes (a 64x64 autoencoder and a 224x224 pretrained-feature
  model): `outputs` then takes {size: images} with every member's size (`image_sizes`), each
  preprocessed from the same files, and shows the members' maps at `image_shape`.
  """

  iteration: int
  models: list
  weights: list
  means: list
  stds: list
  threshold: float
  image_shape: tuple
  epoch: int | None = None
  supervised: bool = False  # the fused map is the members' maps, weighted (no class maps)
  can_reconstruct: bool = False

  @property
  def image_sizes(self) -> tuple[int, ...]:
    """The image sizes the members take, in ascending order."""
    return tuple(sorted({int(m.image_shape[0]) for m in self.models}))

  def outputs(self, images) -> dict:
    """{'scores' (n,): the fused score; 'maps' (n, h, w): sum_k w_k map_k / std_k, each member's
    map on the scale of its standardised score, resized to `image_shape`}, float32.

    `images`: (n, h, w, c) preprocessed images, or {size: images} when the members take
    several sizes (`image_sizes`)."""
    side = int(self.image_shape[0])
    scores, maps = 0.0, 0.0
    for model, w, mu, sd in zip(self.models, self.weights, self.means, self.stds, strict=True):
      s, mp = model.score(images_of_size(images, int(model.image_shape[0])))
      scores = scores + w * (np.asarray(s, np.float64) - mu) / sd
      if mp.shape[1] != side:  # display only: the scores are the member's own
        mp = jax.image.resize(jnp.asarray(mp), (len(mp), side, side), 'bilinear')
      maps = maps + w * np.asarray(mp, np.float64) / sd
    return {'scores': np.asarray(scores, np.float32), 'maps': np.asarray(maps, np.float32)}

  def score(self, images) -> tuple[np.ndarray, np.ndarray]:
    """Fused scores (n,) and maps (n, h, w), float32, of preprocessed images (see `outputs`)."""
    out = self.outputs(images)
    return out['scores'], out['maps']

  def reconstruct(self, images):
    """A fused run has no reconstruction of its own."""
    raise RunError('A fused run has no reconstruction (see its members).')

  def class_maps(self, images, method='gradcam', targets=None, **kwargs):
    """A fused run has no class-activation maps of its own."""
    raise RunError('A fused run has no class-activation maps (see its members).')


def images_of_size(images, size: int):
  """The (n, size, size, c) images of `images`: an array of that size, or {size: array}."""
  if isinstance(images, dict):
    if size not in images:
      raise RunError(f'No {size}x{size} images given (sizes: {sorted(images)}).')
    return images[size]
  if images.shape[1] != size:
    raise RunError(
      f'A member takes {size}x{size} images; these are {images.shape[1]}x{images.shape[2]} '
      "(give {size: images} for each of the members' sizes)."
    )
  return images


def load_fused_models(workdir: str, iterations, config) -> list[EnsembleModel]:
  """The fused model of each finished iteration of a fused run (`inference.load_models` hands
  a fused run over to this).

  Raises:
    RunError: a member is gone, has no checkpoint of an iteration, or its saved scores
      changed since the fusion (its statistics would no longer be those saved: fuse again).
  """
  metrics = finished_iterations(workdir)
  if iterations is None:
    iterations = list(metrics)
  missing = sorted(set(iterations) - set(metrics))
  if missing or not iterations:
    raise RunError(f'{workdir}: iterations {missing} are not fused; fused: {sorted(metrics)}.')
  paths = list(config.ensemble.members)
  weights = [float(w) for w in config.ensemble.weights]
  loaded = {}
  for k, path in enumerate(paths):
    if not weights[k]:
      continue
    if not os.path.isdir(path):
      raise RunError(f'{workdir}: its member {path} is gone.')
    member_metrics = finished_iterations(path)
    for i in iterations:
      saved = metrics[i]['ensemble']['members'][k]
      now = member_metrics.get(i)
      if now is None or not np.allclose(
        standardisation(now['val_scores'], now['val_labels']), (saved['mean'], saved['std'])
      ):
        raise RunError(
          f'{workdir}: its member {path} changed since the fusion (iteration {i}); fuse again.'
        )
    member = load_config(path)
    load = load_fused_models if is_ensemble(member) else load_iteration_models
    loaded[k] = {m.iteration: m for m in load(path, iterations, member)}
  image_shape = data.image_shape(config.data)
  out = []
  for i in iterations:
    rule = metrics[i]['ensemble']['members']
    used = sorted(loaded)
    out.append(
      EnsembleModel(
        iteration=i,
        models=[loaded[k][i] for k in used],
        weights=[weights[k] for k in used],
        means=[float(rule[k]['mean']) for k in used],
        stds=[float(rule[k]['std']) for k in used],
        threshold=float(metrics[i]['threshold']['value']),
        image_shape=image_shape,
      )
    )
  return out
