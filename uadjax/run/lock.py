"""One run per workdir: an exclusive lock held while a run trains or writes.

The lock is `WORKDIR/.lock`, taken with `fcntl.flock`, which the kernel releases when its
process dies (kill -9 included): a lock left by a killed process is stale by construction and
is taken over, with a log line naming the process that held it. The file's content names the
holder (process id, host, start time) for the refusal message of a second run. Readers
(reports, compare, predict) never take the lock: they read only finished iterations, whose
files are written atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

from absl import logging

LOCK_NAME = '.lock'


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir; the message names it."""


class WorkdirLock:
  """Context manager: holds `WORKDIR/.lock` exclusively, or raises WorkdirBusyError at once."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_NAME)
    self._fd: int | None = None

  def acquire(self) -> WorkdirLock:
    """Takes the lock (creating the workdir), or raises WorkdirBusyError naming the holder."""
    os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _describe(_read(fd))
      os.close(fd)
      raise WorkdirBusyError(
        f'{os.path.dirname(self.path)}: another run is using this workdir ({holder}). '
        'Wait for it to finish, stop it, or use another --workdir.'
      ) from None
    previous = _read(fd)
    if previous:
      logging.info('Taking over a stale workdir lock (%s).', _describe(previous))
    record = {'pid': os.getpid(), 'host': socket.gethostname(), 'started': time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    self._fd = fd
    return self

  def release(self) -> None:
    """Empties the lock file (so no stale holder is reported) and releases it."""
    if self._fd is None:
      return
    os.ftruncate(self._fd, 0)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def _read(fd: int) -> dict:
  try:
    text = os.pread(fd, 4096, 0).decode()
    return json.loads(text) if text.strip() else {}
  except (OSError, ValueError):
    return {}


def _describe(record: dict) -> str:
  if not record:
    return 'holder unknown'
  started = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.get('started', 0)))
  return f'process {record.get("pid")} on {record.get("host")}, started {started}'
