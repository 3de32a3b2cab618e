"""Orbax checkpoints: the only module of uadjax that imports orbax.

Layout of one iteration's folder:
  checkpoints/best/     the selected model: {'params', 'batch_stats'} plus 'epoch' and 'metric'
  checkpoints/latest/N  the whole training carry at epoch N (the two most recent), for resuming

`restore(path)` needs nothing but the path, so research code can do
  variables = uadjax.checkpoint.restore('runs/cae/iter_00/checkpoints/best')
  model.apply({'params': variables['params'], 'batch_stats': variables['batch_stats']}, x,
              train=False)
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


def _as_jax(tree):
  # Orbax's StandardSave takes jax arrays (not numpy scalars); python ints are fine too.
  # With several processes every one holds the same, gathered values (the protocol gathers
  # per-iteration results for its metrics anyway): they are saved as numpy arrays, which
  # Orbax writes from the primary process only; a process-local jax.Array would be refused.
  if jax.process_count() > 1:
    return jax.tree.map(np.asarray, tree)
  return jax.device_put(tree)


def _sync(name: str) -> None:
  # On several hosts every process takes part in Orbax's save, but only process 0 moves
  # folders; the others wait here so that nobody reads a half-renamed checkpoint.
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def save(path: str, tree: Any) -> str:
  """Writes `tree` to `path` atomically (Orbax writes to a temporary folder, then renames).

  An existing checkpoint at `path` is replaced only after the new one is complete.
  """
  path = os.path.abspath(path)
  tmp = path + '.new'
  if jax.process_index() == 0 and os.path.exists(tmp):
    shutil.rmtree(tmp)
  _sync(f'uadjax.checkpoint.save.start:{path}')
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp, _as_jax(tree))
  checkpointer.wait_until_finished()
  if jax.process_index() == 0:
    if os.path.exists(path):
      shutil.rmtree(path)
    os.replace(tmp, path)
  _sync(f'uadjax.checkpoint.save.done:{path}')
  return path


def restore(path: str, target: Any = None) -> Any:
  """Reads a checkpoint written by `save`: a pytree of arrays (jax arrays on the default device).

  Args:
    path: the checkpoint folder (e.g. '.../checkpoints/best').
    target: optional pytree of arrays or `jax.ShapeDtypeStruct`s giving structure, dtypes and
      shardings to restore into.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'{path}: no checkpoint here.')
  checkpointer = ocp.StandardCheckpointer()
  if target is None:
    return checkpointer.restore(path)
  return checkpointer.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, target))


class Latest:
  """The rolling 'latest' checkpoints of a training run (keeps the two most recent epochs)."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
      self._directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )

  def epochs(self) -> list[int]:
    """Epochs that have a complete checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, epoch: int, tree: Any) -> None:
    """Saves `tree` as epoch `epoch`, and waits until it is on disk."""
    # The epoch's folder can exist already: a save cut short (a process killed while several
    # were writing) leaves one without its commit, and a fold-parallel group killed between
    # its iterations' saves resumes from the last epoch all of them saved and saves the later
    # epoch again. Either blocks Orbax's save, so it goes first (a complete one is replaced by
    # the same values: training resumes deterministically).
    existing = os.path.join(self._directory, str(int(epoch)))
    if os.path.isdir(existing):
      if jax.process_index() == 0:
        shutil.rmtree(existing)
      _sync(f'uadjax.checkpoint.latest.clean:{existing}')
      self._manager.reload()
    self._manager.save(int(epoch), args=ocp.args.StandardSave(_as_jax(tree)), force=True)
    self._manager.wait_until_finished()

  def restore(self, epoch: int, target: Any) -> Any:
    """Restores epoch `epoch` into the structure (and shardings) of `target`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._manager.restore(int(epoch), args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    """Releases the manager's background resources."""
    self._manager.close()
