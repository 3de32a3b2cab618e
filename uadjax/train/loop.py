"""The epoch engine: whole epochs, validations and best-checkpoint tracking in compiled calls.

One call of `Engine.train` runs `validations` x `val_every` epochs of one iteration (or, vmapped,
of all iterations at once): shuffle, batches, augmentation and steps under `lax.scan`, then the
validation scores, the on-device AUC and the best-so-far variables. Every per-iteration quantity
is a pytree leaf, so the same function runs under `jax.vmap` over a leading iteration axis
(fold-parallel cross-validation), sharded over a mesh of devices. One iteration at a time
(`Engine.validates_between_calls`), the validation leaves the training program instead: an
`EpochsCall` trains `val_every` epochs a compiled call, then scores the validation set with the
outputs program that scores the test set, and a small program keeps the best variables. Either
way the model, its optimiser state and the scores stay on the device; only the logs come back.

Randomness is a pure function of (iteration key, epoch, step): a resumed run draws exactly what
an uninterrupted one would.

Compiled programs, one each per engine (compiling is most of a short run's time on a CPU), all
through `uadjax.run.compiler.task_jit`, which picks their compiler options on a CPU by kind
(TRAINING: train, epochs, select, the host loop's step and validation; SCORING: outputs and
score parts; ONCE: init; see there):
  train     `validations` x (epochs + validation); the count is an argument of the program, so
            the last, shorter call of a run reuses the program of the full ones (fold-parallel
            runs, and the tasks that validate inside: `validates_between_calls` is False).
  epochs    `val_every` epochs, no validation (`EpochsCall`).
  select    the metrics of a validation's scores and the best-so-far variables (`EpochsCall`).
  init      the untrained carry (`Engine.initial_carry`): one program instead of one per
            parameter shape and operation, at -O0 (it runs once).
  outputs   scores, maps and reconstructions of a batch of `score_batch` images (the
            validations of `EpochsCall`, `score_all`, and `uadjax.inference` for reports and
            predictions: the same program); a composite score's parts likewise
            (`score_parts_all`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import struct

from uadjax.evaluation.metrics import auc
from uadjax.run.compiler import ONCE, SCORING, TRAINING, task_jit
from uadjax.train.state import TrainState
from uadjax.train.task import Batch

# How the selected checkpoint is chosen (`cv.selection`); a phase trained before the scored one
# may select by its task's own metric ('task': f-AnoGAN's GAN), which is never a user's choice.
SELECTIONS = ('val_auc', 'val_loss', 'last')
PHASE_SELECTION = 'task'
# Folded into an epoch's key for the 'task' selection's draws: steps use 0..steps_per_epoch.
_SELECTION_KEY = 2**31 - 1


class FoldData(struct.PyTreeNode):
  """One iteration's split as device arrays, padded to a common length with masks.

  Attributes:
    key: the iteration's PRNG key (uint32[2]).
    train_idx, train_mask: training image indices into the dataset's image array.
    val_idx, val_mask, val_labels: validation indices, mask and labels.
    train_labels: labels of `train_idx` (all 0 for the unsupervised models; a supervised
      task trains on them: `Batch.labels`).
    class_weights: (2,) float32 cross-entropy weights of the classes, n / (2 n_c) over the
      training split (a class absent from it weighs 0).
  """

  key: jax.Array
  train_idx: jax.Array
  train_mask: jax.Array
  val_idx: jax.Array
  val_mask: jax.Array
  val_labels: jax.Array
  train_labels: jax.Array
  class_weights: jax.Array


class Carry(struct.PyTreeNode):
  """What one training call hands to the next (and what the 'latest' checkpoint holds).

  Attributes:
    state: the train state.
    best: the variables ({'params', 'batch_stats'}) with the best selection metric so far.
    best_metric: that metric (higher is better; -inf before the first validation).
    best_epoch: the epoch it was reached at (0 = never).
    epoch: epochs done.
  """

  state: TrainState
  best: Any
  best_metric: jax.Array
  best_epoch: jax.Array
  epoch: jax.Array


def initial_carry(state: TrainState) -> Carry:
  """The carry before the first epoch."""
  carry = Carry(
    state=state,
    best=state.variables,
    best_metric=jnp.array(-jnp.inf, jnp.float32),
    best_epoch=jnp.zeros((), jnp.int32),
    epoch=jnp.zeros((), jnp.int32),
  )
  # Every leaf its own buffer: `best` starts as `state`'s variables, and optimiser states may
  # share constant buffers, but the training call donates the carry, which XLA refuses twice.
  return jax.tree.map(jnp.copy, carry)


def pad(indices, length: int, fill: int = 0):
  """Pads an index array to `length`; returns (padded int32, mask bool)."""
  indices = np.asarray(indices, np.int32)
  out = np.full(length, fill, np.int32)
  out[: len(indices)] = indices
  mask = np.zeros(length, bool)
  mask[: len(indices)] = True
  return out, mask


def tree_where(condition, new, old):
  """Leafwise `where(condition, new, old)` for a scalar condition."""
  return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def outputs_fn(task) -> Callable:
  """The pure function `outputs(variables, images)` -> {'scores' (n,), 'maps' (n, h, w), and
  'reconstructions' (n, h, w, c) when the task has `reconstruct`}, float32.

  One program gives everything a report, a prediction or the test scores need: the forward
  pass that the score and the reconstruction share is computed (and compiled) once.
  """

  def outputs(variables, images):
    scores, maps = task.score(variables, images)
    out = {'scores': scores, 'maps': maps}
    if task.reconstructs:
      out['reconstructions'] = task.reconstruct(variables, images)
    return out

  return outputs


class TrainCall:
  """`Engine.train` compiled for up to `capacity` validations, called for `validations` of them.

  Calling it is calling the jitted function with `validations` as an argument: any count up to
  `capacity` runs the same program (nothing is compiled again for a shorter last call), and
  the logs keep their first `validations` entries. `lower(carry, fold, images).compile()` gives
  the same call, compiled ahead of time (the benchmark times the compilation so).
  """

  def __init__(self, jitted, validations: int, capacity: int, parallel: bool):
    self.jitted = jitted
    self.validations = validations
    self.capacity = capacity
    self.parallel = parallel

  def _count(self):
    return np.int32(self.validations)

  def _trim(self, out):
    carry, logs = out
    if self.validations == self.capacity:
      return carry, logs
    n = self.validations
    trim = (lambda x: x[:, :n]) if self.parallel else (lambda x: x[:n])
    return carry, jax.tree.map(trim, logs)

  def __call__(self, carry, fold, images):
    return self._trim(self.jitted(carry, fold, images, self._count()))

  def precompile(self, carry, fold, images) -> None:
    """Compiles the program into JAX's caches (`carry` may be `jax.ShapeDtypeStruct`s)."""
    self.jitted.lower(carry, fold, images, self._count()).compile()

  def lower(self, carry, fold, images):
    """The lowered program; its `compile()` gives a callable `(carry, fold, images)`."""
    call = self

    class _Lowered:
      def __init__(self, lowered):
        self.lowered = lowered

      def as_text(self, *args, **kwargs):
        return self.lowered.as_text(*args, **kwargs)

      def compile(self, *args, **kwargs):
        compiled = self.lowered.compile(*args, **kwargs)
        return lambda c, f, i: call._trim(compiled(c, f, i, call._count()))

    return _Lowered(self.jitted.lower(carry, fold, images, self._count()))


class EpochsCall:
  """`validations` x (`val_every` epochs in one compiled call, then
  `Engine.validate_between_calls`): the training call of one iteration whose validation needs
  only its scores (`Engine.validates_between_calls`).

  Called like a `TrainCall`, `(carry, fold, images) -> (carry, logs)`, with the same logs (as
  numpy). One program trains every count. `lower(carry, fold, images).compile()` compiles its
  three programs ahead of time (the benchmark times the compilation so).
  """

  def __init__(self, engine: Engine, validations: int, programs=None):
    self.engine = engine
    self.validations = validations
    self.programs = programs  # (epochs, outputs, select) compiled ahead of time, or None

  def __call__(self, carry, fold, images):
    engine = self.engine
    if self.programs is None:
      epochs, outputs, select = engine.compiled_epochs(), None, None
    else:
      epochs, outputs, select = self.programs
    rows = []
    for _ in range(self.validations):
      carry, losses = epochs(carry, fold, images)
      carry, logs = engine.validate_between_calls(carry, fold, images, outputs, select)
      rows.append({**losses, **logs})
    logs = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *rows)
    # The dtypes `Engine.train` logs in.
    logs = {k: v.astype(np.int32 if k == 'epoch' else np.float32) for k, v in logs.items()}
    return carry, logs

  def _lowered(self, carry, fold, images):
    engine = self.engine
    batch = jax.ShapeDtypeStruct((engine.score_batch, *images.shape[1:]), images.dtype)
    chunk = jax.ShapeDtypeStruct((engine.score_batch,), jnp.float32)
    n_chunks = fold.val_idx.shape[0] // engine.score_batch
    return (
      engine.compiled_epochs().lower(carry, fold, images),
      engine.compiled_outputs().lower(carry.state.variables, batch),
      engine.compiled_select().lower(carry, fold, (chunk,) * n_chunks),
    )

  def precompile(self, carry, fold, images) -> None:
    """Compiles the epochs program into JAX's caches (`carry` may be `jax.ShapeDtypeStruct`s):
    what the first epochs need. The validation's two programs compile at the first validation,
    so that the first epoch does not wait for them."""
    self.engine.compiled_epochs().lower(carry, fold, images).compile()

  def lower(self, carry, fold, images):
    """The three programs lowered; `compile()` gives a callable `(carry, fold, images)`."""
    engine, call, lowered = self.engine, self, self._lowered(carry, fold, images)

    class _Lowered:
      def compile(self):
        programs = tuple(low.compile() for low in lowered)
        return EpochsCall(engine, call.validations, programs)

    return _Lowered()


class Engine:
  """Compiled training and scoring of one task under the study's protocol.

  Attributes:
    task: a `uadjax.train.task.Task`: `train_step(state, batch, key)` on a `Batch` (images,
      labels, per-image class weights: one form for every family), `score`, and the hooks
      `fit_scorer` and `validation_loss` (see `validate`).
    augment: `augment(key, images) -> images` in JAX, or None for no augmentation.
    batch_size: training batch (the last incomplete batch of an epoch is dropped).
    steps_per_epoch: the largest number of full batches of any iteration.
    uniform_steps: True when every iteration has `steps_per_epoch` batches, so no step needs a
      mask (the masked form copies the state once per step).
    val_every: epochs between two validations.
    selection: 'val_auc' | 'val_loss' | 'last'.
    score_batch: images per scoring batch.
  """

  def __init__(
    self,
    task,
    augment: Callable | None,
    batch_size: int,
    steps_per_epoch: int,
    uniform_steps: bool,
    val_every: int,
    selection: str,
    score_batch: int,
  ):
    if selection not in (*SELECTIONS, PHASE_SELECTION):
      raise ValueError(f'cv.selection={selection!r}; expected one of {SELECTIONS}.')
    self.task = task
    self.augment = augment
    self.batch_size = batch_size
    self.steps_per_epoch = steps_per_epoch
    self.uniform_steps = uniform_steps
    self.val_every = val_every
    self.selection = selection
    self.score_batch = score_batch
    # Read once, outside any trace (a pretrained backbone: `Task.frozen_variables`): merged into
    # the variables of every scoring call, as an argument where a call is made from the host.
    self.frozen = task.frozen_variables()
    self.compiled: dict = {}  # jitted functions, built once per engine and argument set

  def jit(self, fn, kind: str, **kwargs):
    """`fn` jitted with the compiler options of the task's programs of `kind`
    (`uadjax.run.compiler.task_jit`: TRAINING, SCORING or ONCE)."""
    return task_jit(fn, self.task, kind, **kwargs)

  def cached(self, key, build):
    """`build()` (a jitted function) once per engine and `key`: every later call reuses it."""
    if key not in self.compiled:
      self.compiled[key] = build()
    return self.compiled[key]

  # -- pure functions of one iteration -----------------------------------------------------

  def run_epoch(self, state: TrainState, fold: FoldData, images, epoch):
    """One epoch: a fresh shuffle, then every full batch. Returns (state, {'train_loss': the
    mean loss, 'start_loss': the loss of its first step, before its first update}).

    The first epoch's 'start_loss' is the untrained model's loss: the scale that the protocol
    tells a diverged loss by (`uadjax.protocol.divergence`), read on the host from the logs.
    """
    bs = self.batch_size
    epoch_key = jax.random.fold_in(fold.key, epoch)
    noise = jax.random.uniform(jax.random.fold_in(epoch_key, 0), fold.train_mask.shape)
    order = jnp.argsort(jnp.where(fold.train_mask, noise, 2.0))  # padding sorts last
    n_steps = jnp.sum(fold.train_mask) // bs

    def step(state, i):
      positions = jax.lax.dynamic_slice(order, (i * bs,), (bs,))
      augment_key, dropout_key = jax.random.split(jax.random.fold_in(epoch_key, i + 1))
      batch = images[fold.train_idx[positions]]
      if self.augment is not None:
        batch = self.augment(augment_key, batch)
      # Labels and weights are traced for every family; a task that ignores them (the
      # unsupervised ones) costs nothing: XLA drops the unused gathers.
      labels = fold.train_labels[positions]
      batch = Batch(images=batch, labels=labels, weights=fold.class_weights[labels])
      new_state, metrics = self.task.train_step(state, batch, dropout_key)
      if not self.uniform_steps:
        new_state = tree_where(i < n_steps, new_state, state)
      return new_state, metrics['loss']

    state, losses = jax.lax.scan(step, state, jnp.arange(self.steps_per_epoch))
    active = jnp.arange(self.steps_per_epoch) < n_steps
    loss = jnp.sum(jnp.where(active, losses, 0.0)) / jnp.maximum(jnp.sum(active), 1)
    return state, {'train_loss': loss, 'start_loss': losses[0]}

  def scores(self, variables, images, indices):
    """Scores of `images[indices]`, in batches of `score_batch`; `indices` is padded to a
    multiple of it by the caller. Returns float32 (len(indices),)."""
    chunks = indices.reshape(-1, self.score_batch)
    # Inside the training program the frozen variables are constants of the program.
    variables = {**variables, **self.frozen}
    return jax.lax.map(lambda c: self.task.score(variables, images[c])[0], chunks).reshape(-1)

  def validation_scores(self, carry: Carry, fold: FoldData, images):
    """(variables, scores): the variables a validation scores and may keep as best (after the
    task's `fit_scorer`), and the validation set's scores, in batches of `score_batch`."""
    variables = self.task.fit_scorer(carry.state.variables, images, fold.train_idx, fold.train_mask)
    return variables, self.scores(variables, images, fold.val_idx)

  def select(self, carry: Carry, fold: FoldData, images, variables, scores):
    """The validation's metrics from its `scores`; `variables` become the best ones if the
    selection metric improved. Returns (carry, logs).

    `task.validation_loss` gives the validation loss (default: the normal validation images'
    mean score). selection='task': the metric is `-task.selection_metric(variables, images,
    fold, key)`, a task's own distance, lower is better (f-AnoGAN's GAN phase: generated vs.
    training images); logged as 'val_metric'.
    """
    val_auc = auc(scores, fold.val_labels, fold.val_mask)
    val_loss = self.task.validation_loss(scores, fold.val_labels, fold.val_mask, fold.class_weights)
    if self.selection == PHASE_SELECTION:
      key = jax.random.fold_in(jax.random.fold_in(fold.key, carry.epoch), _SELECTION_KEY)
      metric = -self.task.selection_metric(variables, images, fold, key)
    else:
      metric = {
        'val_auc': jnp.where(jnp.isnan(val_auc), -jnp.inf, val_auc),
        'val_loss': -val_loss,
        'last': carry.epoch.astype(jnp.float32),
      }[self.selection]
    # Strictly better only: on ties the earliest checkpoint is kept.
    improved = metric > carry.best_metric
    carry = carry.replace(
      best=tree_where(improved, variables, carry.best),
      best_metric=jnp.where(improved, metric, carry.best_metric),
      best_epoch=jnp.where(improved, carry.epoch, carry.best_epoch),
    )
    logs = {'val_auc': val_auc, 'val_loss': val_loss, 'epoch': carry.epoch}
    if self.selection == PHASE_SELECTION:
      logs['val_metric'] = -metric
    return carry, logs

  def validate(self, carry: Carry, fold: FoldData, images):
    """Scores the validation set, updates the best-so-far variables. Returns (carry, logs).

    The task's `fit_scorer(variables, images, train_idx, train_mask) -> variables` first fits
    what its score needs on the training set (DAGMM: the mixture; the default changes nothing);
    the fitted variables are the ones scored and kept as best (`select`).
    """
    variables, scores = self.validation_scores(carry, fold, images)
    return self.select(carry, fold, images, variables, scores)

  def validates_between_calls(self, parallel: bool) -> bool:
    """Whether validation runs between compiled calls instead of inside them (`EpochsCall`):
    one iteration at a time (not fold-parallel), with a selection and a score that need only
    the validation scores (not the 'task' selection, not a task that `fits_scorer`).

    Then the validation set is scored by the outputs program (`compiled_outputs`: the one that
    scores the test set after training, and the reports' and predictions' images) and a small
    program keeps the best variables (`compiled_select`), so the training program holds epochs
    only: the network's evaluation pass is compiled once a run instead of twice. Measured
    (`python tools/compile_report.py`, docs/performance.md start-up): see there.
    """
    return not parallel and self.selection != PHASE_SELECTION and not self.task.fits_scorer

  def train_epochs(self, carry: Carry, fold: FoldData, images):
    """`val_every` epochs, no validation. Returns (carry, {'train_loss', 'start_loss'}: each
    (val_every,), see `run_epoch`)."""

    def one_epoch(carry, _):
      state, losses = self.run_epoch(carry.state, fold, images, carry.epoch)
      return carry.replace(state=state, epoch=carry.epoch + 1), losses

    return jax.lax.scan(one_epoch, carry, None, length=self.val_every)

  def train(self, carry: Carry, fold: FoldData, images, validations: int, count=None):
    """`validations` x (`val_every` epochs, then a validation). Returns (carry, logs) with logs
    {'train_loss', 'start_loss': (validations, val_every), 'val_auc', 'val_loss', 'epoch':
    (validations,)}.

    `count` (an int32 scalar, possibly traced, at most `validations`; default `validations`):
    run only that many; the logs keep their `validations` rows, the ones not run zero. So
    `validations` is only the size of the logs, and one program serves every count.
    """

    def one_validation(carry):
      carry, losses = self.train_epochs(carry, fold, images)
      carry, logs = self.validate(carry, fold, images)
      return carry, {**losses, **logs}

    def body(i, state):
      carry, logs = state
      carry, new = one_validation(carry)
      logs = jax.tree.map(lambda buffer, x: buffer.at[i].set(x.astype(buffer.dtype)), logs, new)
      return carry, logs

    logs = {
      'train_loss': jnp.zeros((validations, self.val_every), jnp.float32),
      'start_loss': jnp.zeros((validations, self.val_every), jnp.float32),
      'val_auc': jnp.zeros(validations, jnp.float32),
      'val_loss': jnp.zeros(validations, jnp.float32),
      'epoch': jnp.zeros(validations, jnp.int32),
    }
    if self.selection == PHASE_SELECTION:
      logs['val_metric'] = jnp.zeros(validations, jnp.float32)
    # A loop whose trip count is a value, not a shape: the program does not depend on it.
    count = validations if count is None else count
    return jax.lax.fori_loop(0, count, body, (carry, logs))

  # -- compiled entry points -----------------------------------------------------------------

  def compiled_train(self, validations: int, parallel: bool):
    """The training call for `validations` validations: a `TrainCall` (`train` jitted, and
    vmapped over iterations when `parallel`; carry buffers donated), or an `EpochsCall`
    where `validates_between_calls(parallel)`. Both are called `(carry, fold, images) -> (carry,
    logs)` with the same logs. The program of a larger count already compiled is reused (a
    run's last call is often shorter than the others), else one is compiled for exactly this
    count."""
    if self.validates_between_calls(parallel):
      return EpochsCall(self, validations)
    capacities = [k[1] for k in self.compiled if k[0] == 'train' and k[2] == parallel]
    capacity = min((c for c in capacities if c >= validations), default=validations)

    def build():
      def train(carry, fold, images, count):
        return self.train(carry, fold, images, capacity, count)

      fn = jax.vmap(train, in_axes=(0, 0, None, None)) if parallel else train
      return self.jit(fn, TRAINING, donate_argnums=0)

    jitted = self.cached(('train', capacity, parallel), build)
    return TrainCall(jitted, validations, capacity, parallel)

  def compiled_epochs(self):
    """`train_epochs` jitted (one iteration; carry buffers donated)."""
    return self.cached('epochs', lambda: self.jit(self.train_epochs, TRAINING, donate_argnums=0))

  def compiled_select(self):
    """`select` of the state's own variables, jitted: `(carry, fold, chunks) -> (carry, logs)`
    with `chunks` the validation scores in batches of `score_batch` (a tuple of device arrays,
    joined inside the program). One iteration; carry buffers donated."""

    def select(carry, fold, chunks):
      scores = jnp.concatenate(chunks)
      return self.select(carry, fold, None, carry.state.variables, scores)

    return self.cached('select', lambda: self.jit(select, TRAINING, donate_argnums=0))

  def validate_between_calls(self, carry: Carry, fold: FoldData, images, outputs=None, select=None):
    """`validate` where `validates_between_calls`: the validation set scored by the outputs
    program in batches of `score_batch`, then `compiled_select`; the scores stay on the
    device. Returns (carry, logs), as `validate`. `outputs` and `select`: compiled forms to use
    instead of the jitted ones (the benchmark's)."""
    outputs = self.compiled_outputs() if outputs is None else outputs
    select = self.compiled_select() if select is None else select
    variables = {**carry.state.variables, **self.frozen}
    # val_idx is padded to a multiple of score_batch (the padding is masked in `select`).
    chunks = np.asarray(fold.val_idx).reshape(-1, self.score_batch)
    scores = tuple(outputs(variables, images[jax.device_put(c)])['scores'] for c in chunks)
    return select(carry, fold, scores)

  def compiled_validate(self, parallel: bool):
    """`validate` jitted (for the host-loop mode)."""

    def build():
      fn = jax.vmap(self.validate, in_axes=(0, 0, None)) if parallel else self.validate
      return self.jit(fn, TRAINING, donate_argnums=0)

    return self.cached(('validate', parallel), build)

  def compiled_outputs(self):
    """`outputs_fn(task)` jitted: scores, maps (and reconstructions) of a batch of images."""
    return self.cached('outputs', lambda: self.jit(outputs_fn(self.task), SCORING))

  def compiled_init(self, image_shape):
    """`initial_carry(task.init(key, image_shape))` jitted, a function of the key: one program
    (run eagerly, the initialisation compiles one program per operation and parameter shape:
    most of a CPU run's start-up), compiled as a program that runs once (`uadjax.run.compiler.ONCE`:
    LLVM's -O0 on a CPU)."""
    shape = tuple(int(d) for d in image_shape)

    def build():
      def init(key):
        return initial_carry(self.task.init(key, shape))

      return self.jit(init, ONCE)  # docs/performance.md, start-up

    return self.cached(('init', shape), build)

  def initial_carry(self, key, image_shape) -> Carry:
    """The untrained carry of `key` (`compiled_init`)."""
    return self.compiled_init(image_shape)(key)

  def abstract_carry(self, image_shape):
    """The shapes and dtypes of `initial_carry` (`jax.ShapeDtypeStruct`s), nothing computed.

    Traced by `compiled_init`'s own `trace`, whose trace JAX keeps for the call: the
    `initial_carry` that follows does not trace the initialisation again.
    """
    return self.compiled_init(image_shape).trace(jax.random.PRNGKey(0)).out_info

  def compiled_step(self):
    """One jitted train step, for the host loop (augmentation on the host)."""
    return self.cached('step', lambda: self.jit(self.task.train_step, TRAINING, donate_argnums=0))


def in_batches(engine: Engine, fn, variables, images, indices, progress: str = '') -> dict:
  """`fn(variables, images[chunk])` over chunks of `score_batch` indices, as numpy; the last
  chunk is padded with its first index, so every call has one shape (one program). `images`
  may be a pytree of arrays with a leading image axis (a fitted task's features). A
  `progress` label logs the images done and the time left every half minute."""
  outs = []
  indices = np.asarray(indices)
  began = last = time.time()
  for start in range(0, len(indices), engine.score_batch):
    now = time.time()
    if progress and start and now - last >= 30.0:
      last = now
      left = (now - began) * (len(indices) - start) / start
      logging.info('%s: %d/%d images, about %.0f s left.', progress, start, len(indices), left)
    chunk = indices[start : start + engine.score_batch]
    padded = jax.device_put(pad(chunk, engine.score_batch, fill=int(chunk[0]))[0])
    batch = jax.tree.map(lambda x: x[padded], images)  # noqa: B023 (used at once)
    out = jax.tree.map(np.asarray, fn(variables, batch))
    outs.append(jax.tree.map(lambda x: x[: len(chunk)], out))  # noqa: B023 (used at once)
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def score_all(engine: Engine, variables, images, indices) -> tuple[np.ndarray, np.ndarray]:
  """Scores and maps of `images[indices]` on the device, in batches; returned as numpy.

  Every batch has `score_batch` images (the last is padded with its first), so the validation,
  test and extra sets of every iteration run one program: `engine.compiled_outputs()`, which
  `uadjax.inference` compiles the same way for the reports (then read from the persistent
  compilation cache, `uadjax.run.compilation_cache`).
  """
  variables = {**variables, **engine.frozen}
  out = in_batches(engine, engine.compiled_outputs(), variables, images, indices)
  return out['scores'], out['maps']


def score_parts_all(engine: Engine, variables, images, indices) -> dict[str, np.ndarray]:
  """`task.score_parts` (the terms of a composite score: f-AnoGAN's image and feature
  residuals) of `images[indices]`, in batches like `score_all`: one program for every set."""
  fn = engine.cached('score_parts', lambda: engine.jit(engine.task.score_parts, SCORING))
  return in_batches(engine, fn, {**variables, **engine.frozen}, images, indices)


def train_on_host(
  engine: Engine,
  carry: Carry,
  fold: FoldData,
  images,
  host_images: np.ndarray,
  train_indices: np.ndarray,
  host_augment: Callable,
  validations: int,
  host_seed: tuple[int, ...],
  host_labels: np.ndarray,
):
  """The classic loop, one iteration: shuffle and augment on the host (albumentations), one
  jitted step per batch, validation on the device. The reference the compiled epochs are
  measured against; returns (carry, logs) like `Engine.train`.

  Host randomness is drawn from `np.random.default_rng((*host_seed, epoch))`, so a resumed run
  draws what an uninterrupted one would. `host_labels`: the dataset's labels (the batches'
  `Batch.labels`, and through the class weights their `Batch.weights`).
  """
  step = engine.compiled_step()
  if engine.validates_between_calls(False):
    validate = engine.validate_between_calls
  else:
    validate = engine.compiled_validate(False)
  bs = engine.batch_size
  logs = []
  for _ in range(validations):
    losses, starts = [], []
    for _ in range(engine.val_every):
      epoch_key = jax.random.fold_in(fold.key, carry.epoch)
      rng = np.random.default_rng((*host_seed, int(carry.epoch)))
      order = rng.permutation(train_indices)
      state, step_losses = carry.state, []
      for b in range(len(order) // bs):
        batch_idx = order[b * bs : (b + 1) * bs]
        # jnp.asarray, not jax.device_put: per step, device_put's copy measured ~10 % slower
        # training here (host loop 228-274 against 261-279 img/s, alternating runs).
        batch = jnp.asarray(host_augment(host_images[batch_idx], rng))
        dropout_key = jax.random.split(jax.random.fold_in(epoch_key, b + 1))[1]
        labels = jnp.asarray(host_labels[batch_idx], jnp.int32)
        batch = Batch(images=batch, labels=labels, weights=jnp.asarray(fold.class_weights)[labels])
        state, metrics = step(state, batch, dropout_key)
        step_losses.append(metrics['loss'])
      losses.append(jnp.mean(jnp.stack(step_losses)))
      starts.append(step_losses[0])
      carry = carry.replace(state=state, epoch=carry.epoch + 1)
    carry, val_logs = validate(carry, fold, images)
    logs.append({'train_loss': jnp.stack(losses), 'start_loss': jnp.stack(starts), **val_logs})
  return carry, jax.tree.map(lambda *x: jnp.stack(x), *logs)
