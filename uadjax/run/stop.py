"""Clean stops: SIGTERM (a cluster's preemption, `kill`) or SIGINT (Ctrl-C) ask the training
loop to stop after the compiled call in flight, save its latest checkpoint and exit.

The protocol's driver runs training inside `stop.handling()`; the loop polls `requested()`
between compiled calls and raises `Stopped` once its checkpoint is saved. A second signal
stops at once, without saving (the previous checkpoint is kept intact: Orbax writes atomically).
"""

from __future__ import annotations

import contextlib
import signal
import threading

from absl import logging

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested: list[int] = []


class Stopped(RuntimeError):
  """The run stopped on a signal after saving; rerunning the same command resumes it.

  Attributes:
    signum: the signal that asked for the stop.
  """

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum

  @property
  def exit_code(self) -> int:
    """The shell's convention: 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + self.signum


def requested() -> int | None:
  """The signal that asked for a stop, or None."""
  return _requested[0] if _requested else None


def _handle(signum, frame) -> None:
  del frame
  if _requested:
    logging.warning('Second %s: stopping now, without saving.', signal.Signals(signum).name)
    raise KeyboardInterrupt
  _requested.append(signum)
  logging.warning(
    '%s: stopping after the compiled call in flight, then saving (send it again to stop at '
    'once without saving).',
    signal.Signals(signum).name,
  )


@contextlib.contextmanager
def handling():
  """Turns SIGTERM and SIGINT into stop requests while the block runs (main thread only;
  elsewhere signals keep their handlers)."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.signal(s, _handle) for s in _SIGNALS}
  _requested.clear()
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    _requested.clear()
