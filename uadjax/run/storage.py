"""A folder that cannot take a run's files (a full disk, a read-only file system, no permission),
said in one line that names the folder, the cause and the free space.

`check_writable(folder)` tries a write (a temporary file, removed at once) before a run reads its
data, so a folder that cannot be written is refused before anything else happens; a permission
bit cannot tell, a write can (root ignores the bits; a read-only mount ignores root).
`reported(folder, doing)` turns an OSError raised inside its block about a path under `folder`
into a `WorkdirError`; Orbax's errors about storage reach it as OSErrors (`uadjax.run.checkpoint`).
Entry points exit with status 2 on a `WorkdirError` (`uadjax.runtime.user_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile


class WorkdirError(RuntimeError):
  """A folder of results that cannot be written; the message names it, the cause and the free
  space."""


# The errors a write to a full, read-only or forbidden folder gives, where the failing call
# names no path (a `write` that finds the disk full after its file was opened).
_STORAGE_ERRNOS = (
  errno.ENOSPC,
  errno.EDQUOT,
  errno.EFBIG,
  errno.EROFS,
  errno.EACCES,
  errno.EPERM,
  errno.EIO,
)


def _existing(folder: str) -> str:
  """`folder`, or the nearest of its parents that exists (where it would be created)."""
  path = os.path.abspath(folder)
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def free_space(folder: str) -> str:
  """The free space of the file system that holds `folder` (or would), as '4.0 KB'."""
  try:
    free = shutil.disk_usage(_existing(folder)).free
  except OSError:
    return 'unknown'
  for unit in ('B', 'KB', 'MB', 'GB'):
    if free < 1024 or unit == 'GB':
      return f'{free:.0f} {unit}' if unit == 'B' else f'{free:.1f} {unit}'
    free /= 1024
  return f'{free:.1f} TB'


def _cause(error: OSError) -> str:
  # The few causes a user can act on, in words; any other is the system's own message.
  if error.errno in (errno.ENOSPC, errno.EDQUOT):
    return 'no space left on its file system'
  if error.errno == errno.EFBIG:
    return "a file would exceed the process's file-size limit (ulimit -f)"
  if error.errno == errno.EROFS:
    return 'it is on a read-only file system'
  if error.errno in (errno.EACCES, errno.EPERM):
    return 'permission denied'
  return error.strerror or str(error)


RESUMES = (
  'Free space or choose a writable --workdir; rerunning the same command resumes from the last '
  'complete checkpoint.'
)
REWRITES = 'Free space or choose a writable folder, and run the same command again.'


def describe(folder: str, error: OSError, doing: str, hint: str = RESUMES) -> str:
  """One line: the folder, what failed, why, the free space, and what to do (`hint`)."""
  where = f' ({error.filename})' if error.filename else ''
  return (
    f'{folder}: {doing} failed: {_cause(error)}{where}; {free_space(folder)} free there. {hint}'
  )


def check_writable(folder: str) -> None:
  """Raises WorkdirError unless a file can be created in `folder` (or, when it does not exist
  yet, in the nearest parent it would be created in). Nothing is left behind."""
  target = _existing(folder)
  if not os.path.isdir(target):
    raise WorkdirError(f'{folder}: cannot be a folder: {target} is a file.')
  try:
    fd, probe = tempfile.mkstemp(dir=target, prefix='.uadjax-write-probe-')
    try:
      os.write(fd, b'probe')
    finally:
      os.close(fd)
      os.remove(probe)
  except OSError as e:
    cause = _cause(e)
    raise WorkdirError(
      f'{folder}: cannot be written ({cause}: a test file in {target} could not be written). '
      'Choose a writable --workdir.'
    ) from e


def is_under(path: str | None, folder: str) -> bool:
  """Whether `path` is `folder` or inside it."""
  if not path:
    return False
  path, folder = os.path.abspath(os.fsdecode(path)), os.path.abspath(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@contextlib.contextmanager
def reported(folder: str, doing: str = 'writing', hint: str = RESUMES):
  """Inside the block, an OSError about a path under `folder` (or one without a path that the
  storage gives: no space, read-only, no permission, an I/O error) becomes a WorkdirError
  naming the folder, the cause and the free space (`describe`, with `hint`: a run resumes
  (RESUMES), a report or predictions are written again (REWRITES)). A checkpoint's error says
  which save failed (its `doing`, set by `uadjax.run.checkpoint`); any other error is left as it
  is."""
  try:
    yield
  except OSError as e:
    if e.errno is None or (e.filename and not is_under(e.filename, folder)):
      raise
    if not e.filename and e.errno not in _STORAGE_ERRNOS:
      raise  # no path, and not the storage's fault: not for this message
    raise WorkdirError(describe(folder, e, getattr(e, 'doing', doing), hint)) from e
