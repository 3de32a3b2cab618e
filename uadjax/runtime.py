"""Process set-up shared by the entry points: logging, multi-host initialisation, a device log."""

from __future__ import annotations

import logging as std_logging

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
