"""Orbax checkpoints: the only module of uadjax that imports orbax.

Layout of one iteration's folder:
  checkpoints/best/     the selected model: {'params', 'batch_stats'} plus 'epoch' and 'metric'
  checkpoints/latest/N  the whole training carry at epoch N (the two most recent), for resuming

`restore(path)` needs nothing but the path, so research code can do
  variables = uadjax.run.checkpoint.restore('runs/cae/iter_00/checkpoints/best')
  model.apply({'params': variables['params'], 'batch_stats': variables['batch_stats']}, x,
              train=False)
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
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


# Orbax (through TensorStore) reports a failed write as a ValueError with a status code and the
# system's message; these say the storage is at fault, with the errno a user knows it by.
_STORAGE_ERRORS = (
  ('No space left', errno.ENOSPC),
  ('RESOURCE_EXHAUSTED', errno.ENOSPC),
  ('File too large', errno.EFBIG),
  ('Read-only file system', errno.EROFS),
  ('Permission denied', errno.EACCES),
  ('PERMISSION_DENIED', errno.EACCES),
)


def _is_closed_loop_echo(kind, value, tb) -> bool:
  """The echo of a failed save: TensorStore writes still in flight when Orbax's event loop
  closed on the first failure complete later, and their callbacks raise 'Event loop is
  closed' in TensorStore's threads, which Python prints as an unraisable exception."""
  if not (kind is RuntimeError and str(value) == 'Event loop is closed'):
    return False
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  return tb is not None and tb.tb_frame.f_code.co_name == '_check_closed'


def _quiet_closed_loop_echoes() -> None:
  """From now on `sys.unraisablehook` (and `sys.excepthook`) drop `_is_closed_loop_echo`s (they
  only follow a failed save, whose failure is raised to the caller); any other exception is
  printed as before."""
  unraisable, excepthook = sys.unraisablehook, sys.excepthook
  if getattr(unraisable, 'uadjax_quiet', False):
    return

  def quiet_unraisable(args):
    if not _is_closed_loop_echo(args.exc_type, args.exc_value, args.exc_traceback):
      unraisable(args)

  def quiet_excepthook(kind, value, tb):
    if not _is_closed_loop_echo(kind, value, tb):
      excepthook(kind, value, tb)

  quiet_unraisable.uadjax_quiet = True
  sys.unraisablehook, sys.excepthook = quiet_unraisable, quiet_excepthook


@contextlib.contextmanager
def storage_errors(doing: str, path: str):
  """An error of the storage inside the block (an OSError, or Orbax's ValueError naming one)
  is raised as an OSError with `doing` attached (the save, for the one-line message of
  `uadjax.run.storage.reported`); any other error is left as it is."""
  # Before the save: a failed write's echoes can come before its error reaches the caller.
  _quiet_closed_loop_echoes()
  try:
    yield
  except OSError as e:
    e.doing = doing
    raise
  except (ValueError, RuntimeError) as e:
    text = str(e)
    # TensorStore appends the system's errno where it has one ([os_error_code='28']).
    given = re.search(r"os_error_code='(\d+)'", text)
    code = int(given.group(1)) if given else None
    code = code or next((c for marker, c in _STORAGE_ERRORS if marker in text), None)
    if code is None:
      raise
    # The first absolute path it quotes is the file that failed (others are keys inside it).
    quoted = [q for q in re.findall(r'"([^"]+)"', text) if os.path.isabs(q)]
    error = OSError(code, os.strerror(code), quoted[0] if quoted else path)
    error.doing = doing
    raise error from e


def save(path: str, tree: Any) -> str:
  """Writes `tree` to `path` atomically (Orbax writes to a temporary folder, then renames).

  An existing checkpoint at `path` is replaced only after the new one is complete.
  """
  path = os.path.abspath(path)
  tmp = path + '.new'
  if jax.process_index() == 0 and os.path.exists(tmp):
    shutil.rmtree(tmp)
  _sync(f'uadjax.run.checkpoint.save.start:{path}')
  with storage_errors(f'saving the checkpoint {path}', path):
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp, _as_jax(tree))
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
      if os.path.exists(path):
        shutil.rmtree(path)
      os.replace(tmp, path)
  _sync(f'uadjax.run.checkpoint.save.done:{path}')
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
      _sync(f'uadjax.run.checkpoint.latest.clean:{existing}')
      self._manager.reload()
    with storage_errors(f'saving the latest checkpoint of epoch {int(epoch)}', existing):
      self._manager.save(int(epoch), args=ocp.args.StandardSave(_as_jax(tree)), force=True)
      self._manager.wait_until_finished()

  def restore(self, epoch: int, target: Any) -> Any:
    """Restores epoch `epoch` into the structure (and shardings) of `target`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._manager.restore(int(epoch), args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    """Releases the manager's background resources."""
    self._manager.close()
