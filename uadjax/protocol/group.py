"""Iterations trained together: placement on the devices, sharding, gathering, the 'latest'
checkpoints, resuming, and the loop of compiled calls with its progress and clean stops.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from uadjax import config as config_lib
from uadjax import io
from uadjax.protocol import divergence, progress, summaries
from uadjax.protocol.setup import Protocol
from uadjax.run import checkpoint, stop
from uadjax.run.layout import RunDir
from uadjax.train.loop import Carry, train_on_host

CHECKPOINT_EVERY_S = 600


class Placement:
  """Where a group's per-iteration trees live on the devices: one iteration as plain device
  arrays (sequential), or every iteration stacked on a leading axis and sharded over a mesh
  of all devices (fold-parallel; the axis padded to a multiple of the device count with
  copies of the first iteration, whose results are discarded).

  Args:
    n_iterations: the iterations of the group.
    parallel: fold-parallel.
  """

  def __init__(self, n_iterations: int, parallel: bool):
    self.n_iterations = n_iterations
    self.parallel = parallel
    self.mesh = None
    self.n_padded = 1
    if parallel:
      devices = np.array(jax.devices())
      self.mesh = Mesh(devices, ('iterations',))
      self.n_padded = -(-n_iterations // len(devices)) * len(devices)

  def put(self, trees: list):
    """The iterations' trees (carries, fold data) on the device(s), stacked when parallel."""
    if not self.parallel:
      return jax.device_put(trees[0])
    trees = trees + [trees[0]] * (self.n_padded - len(trees))
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
    sharding = NamedSharding(self.mesh, PartitionSpec('iterations'))
    return jax.tree.map(
      lambda x: jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]), stacked
    )

  def get(self, tree) -> list:
    """Per-iteration numpy copies of a (possibly stacked, sharded) pytree."""
    if jax.process_count() > 1:
      tree = multihost_utils.process_allgather(tree, tiled=True)
    tree = jax.tree.map(np.asarray, tree)
    if not self.parallel:
      return [tree]
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(self.n_iterations)]

  def abstract(self, tree):
    """Shapes and dtypes (`jax.ShapeDtypeStruct`s) of one iteration's tree as `put` places it:
    stacked and sharded when parallel. For compiling ahead of the values."""
    # Strongly typed, as the arrays that `put` makes from numpy are (a weakly typed leaf would
    # be another program).
    if not self.parallel:
      return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
    sharding = NamedSharding(self.mesh, PartitionSpec('iterations'))
    return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((self.n_padded, *x.shape), x.dtype, sharding=sharding), tree
    )

  def replicate(self, x: np.ndarray):
    """An array (the dataset's images) on every device."""
    if not self.parallel:
      return jax.device_put(x)
    sharding = NamedSharding(self.mesh, PartitionSpec())
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


class Group:
  """Iterations trained together: one (sequential) or all (fold-parallel, vmapped, sharded).

  Args:
    protocol: the run's (or the phase's) set-up.
    run_dir: the phase's folder (`RunDir`; the scored phase's is the workdir).
    iterations: the iterations of the group.
    parallel: fold-parallel (one vmapped program over the iterations, sharded over the local
      devices, and over the processes' devices in a multi-process run).
    on_checkpoint: `on_checkpoint(iteration, carry)` after each 'latest' checkpoint of an
      iteration (a phase's sample grids), or None.
    on_diverged: `on_diverged(iteration, found, history)` when an iteration's training loss
      diverges (`uadjax.protocol.divergence.check`), or None. The iteration is stopped there:
      its lane of a fold-parallel group still runs (the program is the group's) but nothing of
      it is logged, saved or finished again.

  Attributes:
    diverged: {index in `iterations`: what `divergence.check` found} of the diverged ones.
  """

  def __init__(
    self,
    protocol: Protocol,
    run_dir: RunDir,
    iterations: list[int],
    parallel: bool,
    on_checkpoint: Callable | None = None,
    on_diverged: Callable | None = None,
  ):
    self.p = protocol
    self.run_dir = run_dir
    self.iterations = iterations
    self.parallel = parallel
    self.on_checkpoint = on_checkpoint
    self.on_diverged = on_diverged
    self.diverged: dict[int, dict] = {}
    self.latest = [checkpoint.Latest(run_dir.latest(i)) for i in iterations]
    self.histories = [None] * len(iterations)
    self.placement = Placement(len(iterations), parallel)
    self.summaries = summaries.Summaries(protocol, run_dir)

  # -- resuming ----------------------------------------------------------------------------------

  def _resume_epoch(self) -> int:
    """The most recent epoch every iteration of the group has saved (0: none)."""
    saved = [set(m.epochs()) for m in self.latest]
    common = set.intersection(*saved) if saved else set()
    return max(common) if common else 0

  def restore(self) -> list[Carry]:
    """Each iteration's carry at the most recent epoch all of them have saved, else fresh."""
    fresh = [self.p.initial_carry(i) for i in self.iterations]
    epoch = self._resume_epoch()
    carries = []
    for k, i in enumerate(self.iterations):
      history_path = self.run_dir.history(i)
      history = progress.empty_history()
      if epoch:
        carry = self.latest[k].restore(epoch, fresh[k])
        if os.path.exists(history_path):
          history = progress.truncate_history(io.read_json(history_path), epoch)
        logging.info('Iteration %d: resuming from epoch %d.', i, epoch)
      else:
        carry = fresh[k]
      carries.append(jax.tree.map(np.asarray, carry))
      self.histories[k] = history
    return carries

  def save_latest(self, carries: list[Carry]) -> None:
    """Each iteration's 'latest' checkpoint and history.json (then `on_checkpoint`, and the
    TensorBoard images)."""
    for k, i in enumerate(self.iterations):
      if k in self.diverged:
        continue
      epoch = int(carries[k].epoch)
      self.latest[k].save(epoch, carries[k])
      if jax.process_index() == 0:
        io.write_json(self.run_dir.history(i), self.histories[k])
        if self.on_checkpoint is not None:
          self.on_checkpoint(i, carries[k])
        self.summaries.log_images(i, carries[k])

  # -- training ------------------------------------------------------------------------------

  def compile_ahead(self, images, validations: int) -> concurrent.futures.Future:
    """Compiles the group's training call in a background thread; returns its future.

    It needs only shapes (the carry's from the initial state's trace, `Engine.abstract_carry`;
    the fold data's from `jax.eval_shape`; nothing computed), so it starts before the fold data
    and `restore`: the training call's tracing and lowering (Python) run while the fold's keys
    and the initial state's program compile (XLA, without the GIL), and its compilation while
    the initial state is computed (docs/performance.md, start-up, for what it gains). The
    programs land in JAX's caches, so the first call compiles nothing (an `EpochsCall`'s
    validation programs compile at its first validation). A run that stops or fails meanwhile
    exits once the thread is done: it is no daemon, because an interpreter that shuts down
    while a daemon thread is inside XLA can abort instead of exiting with the run's status.
    Nothing is compiled for the host loop (`augment.backend='albumentations'`, which compiles
    as it goes) or for a group whose checkpoints are at the last epoch already; the future is
    then done.
    """
    future = concurrent.futures.Future()
    if self.p.host_augment is not None or self._resume_epoch() >= self.p.config.train.epochs:
      future.set_result(None)
      return future
    engine = self.p.engine
    carry = self.placement.abstract(engine.abstract_carry(self.p.image_shape))
    first = self.iterations[0]
    fold = self.placement.abstract(jax.eval_shape(lambda: self.p.fold_data(first)))
    call = engine.compiled_train(validations, self.parallel)

    def compile_():
      try:
        call.precompile(carry, fold, images)
      except BaseException as e:  # handed to the waiting thread by `result()`
        future.set_exception(e)
      else:
        future.set_result(None)

    threading.Thread(target=compile_, name='compile-ahead').start()
    return future

  def _check_divergence(self, before: int) -> None:
    """Marks the iterations whose training loss diverged after epoch `before` (host side, from
    the logs of the call) and hands each to `on_diverged`."""
    for k, i in enumerate(self.iterations):
      if k in self.diverged:
        continue
      found = divergence.check(self.histories[k], before)
      if found is None:
        continue
      self.diverged[k] = found
      logging.error('%s', divergence.message(i, self.run_dir.phase, found))
      if self.on_diverged is not None:
        self.on_diverged(i, found, self.histories[k])

  def train(self) -> list[Carry]:
    """Trains every iteration of the group to `train.epochs`; returns the final carries."""
    c = self.p.config
    engine = self.p.engine
    total = c.train.epochs
    images = self.placement.replicate(self.p.dataset.images)
    per_call = max(1, c.cv.epochs_per_call // c.cv.val_every)
    compiling = self.compile_ahead(images, min(per_call, total // c.cv.val_every))
    fold = self.placement.put([self.p.fold_data(i) for i in self.iterations])
    carries = self.restore()
    epoch = int(carries[0].epoch)
    self.summaries.resume_at(epoch)
    carry = self.placement.put(carries)
    if not stop.requested():
      compiling.result()  # the training call is compiled (or its error is raised here)
    label = f'iterations {self.iterations}' if self.parallel else f'iteration {self.iterations[0]}'
    last_save_epoch, last_save_time = epoch, time.time()
    start_time, start_epoch = time.time(), epoch
    images_per_epoch = engine.steps_per_epoch * engine.batch_size * len(self.iterations)
    if stop.requested() and epoch < total:
      raise stop.Stopped(
        f'Stopped before training {label} (at epoch {epoch}); rerun the same command to resume.',
        stop.requested(),
      )
    while epoch < total:
      validations = min(per_call, (total - epoch) // c.cv.val_every)
      if self.p.host_augment is not None:
        iteration = self.iterations[0]
        carry, logs = train_on_host(
          engine,
          carry,
          fold,
          images,
          self.p.dataset.images,
          self.p.splits[iteration].train,
          self.p.host_augment,
          validations,
          (c.seed, iteration),
          self.p.dataset.labels,
        )
      else:
        carry, logs = engine.compiled_train(validations, self.parallel)(carry, fold, images)
      logs = self.placement.get(logs)
      before = epoch
      epoch += validations * c.cv.val_every
      for k, log in enumerate(logs):
        if k not in self.diverged:
          progress.append_history(self.histories[k], log, before)
      self._check_divergence(before)
      going = [k for k in range(len(logs)) if k not in self.diverged]
      self.summaries.log_call([self.iterations[k] for k in going], [logs[k] for k in going], before)
      if not going:
        break  # every iteration of the group has diverged: nothing left to train
      progress.log_progress(
        self.run_dir.progress,
        [self.iterations[k] for k in going],
        label,
        epoch,
        total,
        [logs[k] for k in going],
        start_time,
        start_epoch,
        images_per_epoch,
      )
      if (
        epoch - last_save_epoch >= c.cv.checkpoint_every
        or epoch == total
        or time.time() - last_save_time > CHECKPOINT_EVERY_S
      ):
        self.save_latest(self.placement.get(carry))
        last_save_epoch, last_save_time = epoch, time.time()
      if stop.requested() and epoch < total:
        if last_save_epoch != epoch:
          self.save_latest(self.placement.get(carry))
        raise stop.Stopped(
          f'{label}: saved at epoch {epoch}; rerun the same command to resume.', stop.requested()
        )
    if start_epoch == total:  # nothing to train: restored at the end
      return carries
    return self.placement.get(carry)


def iteration_groups(config, todo: list[int]) -> tuple[list[list[int]], bool]:
  """The iterations trained together (all at once when fold-parallel, else one by one) and
  whether that is fold-parallel."""
  parallel = bool(config.cv.parallel) and config.augment.backend == 'jax'
  if jax.process_count() > 1 and not parallel:
    # Several processes share the work only by sharding the iteration axis of one group.
    raise config_lib.ConfigError(
      f'{jax.process_count()} processes need the fold-parallel mode: cv.parallel=True and '
      f"augment.backend='jax' (got cv.parallel={config.cv.parallel}, "
      f'augment.backend={config.augment.backend!r}).'
    )
  return ([todo] if parallel and todo else [[i] for i in todo]), parallel


def train_groups(
  protocol, run_dir, groups, parallel, finish, on_checkpoint=None, on_diverged=None
) -> None:
  """Trains each group of iterations and calls `finish(iteration, carry, history)` on each
  that did not diverge (`on_diverged(iteration, found, history)` is called on the others as
  they diverge); the 'latest' checkpoint managers and the TensorBoard writers are closed however
  training ends (a clean stop too)."""
  for group_iterations in groups:
    group = Group(protocol, run_dir, group_iterations, parallel, on_checkpoint, on_diverged)
    try:
      carries = group.train()
      for k, i in enumerate(group_iterations):
        if k not in group.diverged:
          finish(i, carries[k], group.histories[k])
    finally:
      for m in group.latest:
        m.close()
      group.summaries.close()
