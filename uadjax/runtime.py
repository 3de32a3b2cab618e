"""Process set-up shared by the entry points: logging, multi-host initialisation, a device log."""

from __future__ import annotations

import contextlib
import logging as std_logging
import sys

import jax
from absl import logging


class _QuietLibraries(std_logging.Filter):
  """Drops INFO records of Orbax (one line per file it writes) from absl's log."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno > std_logging.INFO or '/orbax/' not in record.pathname


def setup(distributed: bool = False) -> None:
  """Quiets library logs, initialises JAX's multi-host runtime if asked, logs the devices."""
  std_logging.getLogger('absl').addFilter(_QuietLibraries())
  if distributed:
    jax.distributed.initialize()
  devices = jax.devices()
  logging.info(
    'JAX %s, backend %s, process %d/%d, %d devices (%s)',
    jax.__version__,
    jax.default_backend(),
    jax.process_index(),
    jax.process_count(),
    len(devices),
    devices[0].device_kind,
  )


@contextlib.contextmanager
def user_errors():
  """Ends an entry point with one line instead of a traceback where the cause is the user's
  input (a bad config field, bad data, a busy workdir, a run folder that cannot give what was
  asked: exit 2), and with 128 + the signal number after a clean stop (uadjax.run.stop)."""
  from uadjax.config import ConfigError
  from uadjax.data import DataError
  from uadjax.inference import RunError
  from uadjax.run.lock import WorkdirBusyError
  from uadjax.run.stop import Stopped

  try:
    yield
  except Stopped as e:
    logging.warning('%s', e)
    sys.exit(e.exit_code)
  except (ConfigError, DataError, WorkdirBusyError, RunError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
