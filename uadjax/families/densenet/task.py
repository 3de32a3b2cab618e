"""A supervised image classifier (the fundus study's DenseNet121) as an engine task.

Trained on both classes with the weighted cross-entropy (PyTorch's `CrossEntropyLoss(weight=w)`,
mean reduction: sum_i w_{y_i} nll_i / sum_i w_{y_i}); the weights come from the training split's
class counts (`FoldData.class_weights`, n / (2 n_c)). Its score is the softmax probability of
class 1 (poor quality), so validation AUC, the threshold and the test metrics are those of every
other model; `validation_loss` is the weighted cross-entropy on the validation set (the study
selects the checkpoint with the lowest, `cv.selection='val_loss'`).

Images arrive in [0, 1] (after augmentation) and are normalised with ImageNet's mean and std
inside the task, so the dataset, the figures and the CAM overlays stay in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from uadjax.families.densenet import model as densenet
from uadjax.train.state import TrainState, create_train_state
from uadjax.train.task import Batch, Task

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def weighted_cross_entropy(logits, labels, weights, mask=None):
  """PyTorch's weighted mean cross-entropy, float32: sum(w_i nll_i) / sum(w_i) with `weights`
  (n,) the weight of each sample's class; `mask` (n,) drops padded samples."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  w = weights
  if mask is not None:
    w = jnp.where(mask, w, 0.0)
  return jnp.sum(w * nll) / jnp.maximum(jnp.sum(w), 1e-12)


@dataclasses.dataclass(frozen=True)
class ClassifierTask(Task):
  """Supervised training of a classifier module called as `model(x, train=...) -> logits`.

  Attributes:
    model: the Flax module (`uadjax.families.densenet.DenseNet`).
    tx: the optimiser (study: SGD, lr 1e-3).
    pretrained: path of torchvision DenseNet121 weights as `.npz` ('' = train from scratch);
      see `uadjax.families.densenet.model.load_torchvision_npz`.
    imagenet_norm: normalise inputs with ImageNet's mean and std (the study's; RGB input).
  """

  model: nn.Module
  tx: optax.GradientTransformation
  pretrained: str = ''
  imagenet_norm: bool = True

  supervised: ClassVar[bool] = True
  anomaly_maps: ClassVar[bool] = False  # `score`'s maps are empty: the CAMs are computed apart
  # DenseNet121's scoring program compiled slower without the fusion emitters (4.88 s against
  # 3.20 s, medians of three; `tools/compile_options_bench.py`, docs/performance.md start-up;
  # uadjax.run.compiler.SCORING): it keeps them.
  cpu_scoring_fusion_emitters: ClassVar[bool] = True

  def note(self) -> str:
    """Where the initial weights come from (ImageNet or none)."""
    return weights_source(self.pretrained)

  def inputs(self, images):
    """[0, 1] images -> the network's input (ImageNet-normalised when `imagenet_norm`)."""
    x = images.astype(jnp.float32)
    if self.imagenet_norm:
      if x.shape[-1] != 3:
        raise ValueError(
          f'ImageNet normalisation needs RGB images; got {x.shape[-1]} channels '
          "(set data.preprocess='rgb' or task.imagenet_norm=False)."
        )
      x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    return x

  def init(self, key, image_shape) -> TrainState:
    """A fresh state; the features from `pretrained` when it names a file."""
    dummy = jnp.zeros((1, *image_shape), jnp.float32)
    variables = jax.jit(lambda k: self.model.init({'params': k}, dummy, train=False))(key)
    if self.pretrained:
      variables = densenet.load_torchvision_npz(self.pretrained, variables)
      variables = jax.tree.map(jnp.asarray, variables)
    return create_train_state(dict(variables), self.tx)

  def logits(self, variables, images):
    """Evaluation-mode logits (n, classes), float32."""
    return self.model.apply(variables, self.inputs(images), train=False)

  def train_step(self, state: TrainState, batch: Batch, key):
    """One optimiser update on a labelled batch (its per-image class weights); pure. Metrics:
    'loss' (weighted CE)."""
    x = self.inputs(batch.images)

    def objective(params):
      logits, updates = self.model.apply(
        {'params': params, 'batch_stats': state.batch_stats},
        x,
        train=True,
        rngs={'dropout': key},
        mutable=['batch_stats'],
      )
      return weighted_cross_entropy(logits, batch.labels, batch.weights), updates

    (loss, updates), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    new_state = state.apply_gradients(self.tx, grads, updates.get('batch_stats', state.batch_stats))
    return new_state, {'loss': loss}

  def score(self, variables, images):
    """P(class 1) (n,) and empty maps (n, h, w): the CAMs are the classifier's maps
    (`uadjax.evaluation.cam`), computed apart because they need gradients."""
    p = jax.nn.softmax(self.logits(variables, images), axis=-1)[:, 1]
    return p, jnp.zeros(images.shape[:3], jnp.float32)

  def validation_loss(self, scores, labels, mask, class_weights):
    """The weighted cross-entropy of the validation set from its P(class 1) scores."""
    p = jnp.clip(scores.astype(jnp.float32), 1e-7, 1 - 1e-7)
    logits = jnp.stack([jnp.log1p(-p), jnp.log(p)], axis=-1)  # log-probabilities: softmax-stable
    return weighted_cross_entropy(logits, labels, class_weights[labels], mask)


def weights_source(pretrained: str) -> str:
  """Where the classifier's initial weights come from, for logs and summaries."""
  if pretrained:
    return f'ImageNet weights from {pretrained}'
  return 'trained from scratch (no ImageNet weights; set --config.task.pretrained=FILE.npz)'
