"""The task contract: what a model family's task gives the engine, the protocol and the readers.

A task is a frozen dataclass with fields `model` (a Flax module) and `tx` (the optax optimiser),
plus its own settings from `config.task`, subclassing `Task`. It provides three pure functions:

  init(key, image_shape) -> TrainState             a fresh state for (h, w, c) images
  train_step(state, batch: Batch, key) -> (state, {'loss': scalar, ...})
                                                    one update; the same Batch for every family
  score(variables, images) -> (scores (n,), maps (n, h, w))   float32, evaluation mode

and may override the hooks below, whose defaults suit an unsupervised model. The engine, the
protocol and `uadjax.inference` call every hook unconditionally, and read the class flags
(`reconstructs`, `anomaly_maps`, `composite_score`, `supervised`, `fit_only`) instead of probing
for methods.

A task that fits instead of trains (`FitTask`: the pretrained-feature families, the intensity
baseline) has no epochs, no optimiser and no train step: the protocol calls its `fit` once per
iteration on the training normals and chooses between the candidates it returns on validation.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from uadjax.run import compiler


class Batch(struct.PyTreeNode):
  """One training batch, the same for every family.

  Attributes:
    images: (n, h, w, c) float32 in [0, 1], augmented.
    labels: (n,) int32; 0 (normal) for the unsupervised families, which train on normals only.
    weights: (n,) float32 per-image loss weights: the classifier's class weights n / (2 n_c)
      of each image's class; the unsupervised families ignore them.
  """

  images: jax.Array
  labels: jax.Array
  weights: jax.Array

  @classmethod
  def of(cls, images, labels=None, weights=None) -> Batch:
    """A batch of `images`; labels default to 0 (normal), weights to 1."""
    n = images.shape[0]
    labels = jnp.zeros(n, jnp.int32) if labels is None else jnp.asarray(labels, jnp.int32)
    weights = jnp.ones(n, jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    return cls(images=images, labels=labels, weights=weights)


class Task:
  """The base of every task: the optional hooks, with the defaults of an unsupervised model.

  Class flags:
    supervised: trains on both classes (the classifier); the protocol then logs where its
      initial weights come from. The engine itself does not branch on it.
    fit_only: a `FitTask`: fitted in one pass (`uadjax.protocol.fit`), never trained.
    reconstructs: `reconstruct` gives an image to show (the autoencoders, f-AnoGAN's G(E(x))).
    anomaly_maps: `score`'s maps show where an image is anomalous (False where they are empty:
      the classifier, whose maps are its CAMs, computed apart, and f-AnoGAN's GAN phase).
    composite_score: the score is a sum of terms that `score_parts` returns (f-AnoGAN: image
      and feature residuals); the test set's parts are kept in metrics.json.
    cpu_optimization_level: LLVM's level for the task's training and scoring programs on a
      CPU (`uadjax.run.compiler`; default -O1, which compiles a third faster and trains as fast).
    cpu_scoring_fusion_emitters: compile the scoring programs with XLA:CPU's fusion emitters
      (`uadjax.run.compiler.SCORING`; default off, which compiles them 35-45 % faster and runs as
      fast for the autoencoders, f-AnoGAN and DAGMM).
  """

  supervised: ClassVar[bool] = False
  fit_only: ClassVar[bool] = False
  reconstructs: ClassVar[bool] = False
  anomaly_maps: ClassVar[bool] = True
  composite_score: ClassVar[bool] = False
  cpu_optimization_level: ClassVar[int] = compiler.CPU_OPTIMIZATION_LEVEL
  cpu_scoring_fusion_emitters: ClassVar[bool] = False

  def frozen_variables(self) -> dict:
    """Variable collections that come from outside the run (a pretrained backbone's weights):
    merged into the variables before every scoring call, never saved in a checkpoint (they
    are the same for every iteration). Default: none."""
    return {}

  def note(self) -> str:
    """A line about the task for the log and the summary's title ('' for none; the classifier:
    where its initial weights come from)."""
    return ''

  @property
  def fits_scorer(self) -> bool:
    """Whether the task overrides `fit_scorer` (DAGMM: its mixture): the engine then validates
    inside its training program, where the training set's forward pass is."""
    return type(self).fit_scorer is not Task.fit_scorer

  def fit_scorer(self, variables, images, train_idx, train_mask):
    """What the score needs from the training set, fitted before each validation and kept with
    the best variables (DAGMM: the mixture). Default: nothing; `variables` unchanged."""
    del images, train_idx, train_mask
    return variables

  def validation_loss(self, scores, labels, mask, class_weights):
    """The validation loss (selection 'val_loss'). Default: the mean score of the normal
    validation images (an autoencoder's reconstruction error)."""
    del class_weights
    normal = mask & (labels == 0)
    return jnp.sum(jnp.where(normal, scores, 0.0)) / jnp.maximum(jnp.sum(normal), 1)

  def reconstruct(self, variables, images):
    """Reconstructions (n, h, w, c) float32 in [0, 1], where `reconstructs`."""
    raise NotImplementedError(f'{type(self).__name__} has no reconstruction.')

  def score_parts(self, variables, images) -> dict:
    """{term: (n,)} of a composite score, where `composite_score`."""
    raise NotImplementedError(f'{type(self).__name__} has a single-term score.')

  def selection_metric(self, variables, images, fold, key):
    """A phase's own selection distance, lower is better (engine selection 'task': f-AnoGAN's
    GAN phase)."""
    raise NotImplementedError(f'{type(self).__name__} has no selection metric of its own.')


class FitTask(Task):
  """A task fitted in one pass over the training normals instead of trained (`fit_only`).

  Fields: `model` (a Flax module; for the feature families, the frozen backbone) and `tx`
  (unused, `optax.identity()`: kept so `families.make_task` builds every task alike), plus the
  task's settings. It provides:

    init(key, image_shape) -> TrainState   zeros of the fitted variables' shapes (`params`):
                                           what a checkpoint restores into
    embed(variables, images) -> features   pure: what `fit` needs of each image (a pytree with
                                           a leading image axis), computed once per run for
                                           every image in one compiled program
    fit(key, features) -> [(name, variables)]   host-level: the candidates fitted to the
                                           training normals' features; the protocol keeps the
                                           one with the best validation AUC
    score(variables, images) -> (scores, maps)  as every task's
    score_embedded(variables, features) -> scores   pure, optional: the same scores from
                                           `embed`'s features (the protocol then scores the
                                           validation and test sets without running the
                                           backbone again); `embeds_scores` says whether

  `variables` always include `frozen_variables()`.
  """

  fit_only: ClassVar[bool] = True
  embeds_scores: ClassVar[bool] = False

  def embed(self, variables, images):
    """What `fit` needs of each image (a pytree with a leading image axis)."""
    raise NotImplementedError

  def fit(self, key, features) -> list:
    """[(candidate name, variables)] fitted to the training normals' `features` (numpy)."""
    raise NotImplementedError

  def score_embedded(self, variables, features):
    """Scores (n,) float32 of `embed`'s features, equal to `score`'s (where `embeds_scores`)."""
    raise NotImplementedError(f'{type(self).__name__} scores images only.')

  def train_step(self, state, batch, key):
    """A fitted task has no train step."""
    raise NotImplementedError(f'{type(self).__name__} is fitted, not trained.')
