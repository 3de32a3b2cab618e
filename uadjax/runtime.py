"""Process set-up shared by the entry points: logging, multi-host initialisation, a device log,
a quicker exit."""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging as std_logging
import sys

import jax
from absl import logging

from uadjax.config import ConfigError
from uadjax.data import DataError
from uadjax.inference import RunError
from uadjax.run import compilation_cache
from uadjax.run.lock import WorkdirBusyError
from uadjax.run.records import RecordError
from uadjax.run.stop import Stopped
from uadjax.run.storage import WorkdirError


class _QuietLibraries(std_logging.Filter):
  """Drops Orbax's INFO records (one line per file it writes) and its ERROR records from
  absl's log: each error is one of the failures that its save or restore then raises to uadjax
  (a full disk: five tracebacks of its background threads before the one line that
  `uadjax.run.storage` says; any other failure keeps the traceback of its exception)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if '/orbax/' not in record.pathname:
      return True
    return record.levelno in (std_logging.WARNING, std_logging.CRITICAL)


def setup(
  distributed: bool = False,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  heartbeat_timeout_s: int | None = None,
) -> None:
  """Quiets library logs, initialises JAX's multi-process runtime if asked, logs the devices.

  Args:
    distributed: call `jax.distributed.initialize`. With the other arguments None, JAX finds
      the coordinator, process count and id in the cluster's environment (SLURM, Cloud TPU,
      ...); set them to launch processes by hand (one machine, or hosts without a manager).
    coordinator_address: 'host:port' of process 0's coordination service.
    num_processes: how many processes take part.
    process_id: this process's id, 0 .. num_processes - 1.
    heartbeat_timeout_s: how long the others wait for a silent (killed) process before they
      stop with an error (JAX's default: 100 s).
  """
  std_logging.getLogger('absl').addFilter(_QuietLibraries())
  compilation_cache.setup()  # before anything compiles: JAX reads it at its first compile
  atexit.unregister(skip_final_collection)  # once, however often a process sets up
  atexit.register(skip_final_collection)
  if distributed:
    # CPU processes exchange arrays through gloo (on GPUs NCCL is used; this setting is
    # ignored there).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    kwargs = (
      {} if heartbeat_timeout_s is None else {'heartbeat_timeout_seconds': heartbeat_timeout_s}
    )
    jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
      **kwargs,
    )
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


def skip_final_collection() -> None:
  """Spares the interpreter's last garbage collections at exit (`gc.freeze`: every object
  left is moved out of the collector's reach), registered with `atexit` by `setup`.

  After a run, CPython's shutdown walked JAX's, Flax's and the run's objects for cycles: 0.45-0.50
  s of every command's exit, against 0.13-0.14 s with this (a tiny CAE run, three each, the
  2-core development CPU; `perf` put the difference in `gc_collect_main`). Only what lives in
  reference cycles is no longer finalised at exit, and nothing of uadjax's needs it: every file
  is written and closed inside a `with` block, checkpoints are waited for, and the other exit
  handlers (JAX's, the standard library's `weakref.finalize` hooks) still run. The memory goes
  back to the system with the process.
  """
  gc.freeze()


@contextlib.contextmanager
def user_errors():
  """Ends an entry point with one line instead of a traceback where the cause is the user's
  input (a bad config field, bad data, a busy workdir, a folder that cannot be written (full,
  read-only), a run folder that cannot give what was asked: exit 2), and with 128 + the signal
  number after a clean stop (uadjax.run.stop)."""
  try:
    yield
  except Stopped as e:
    logging.warning('%s', e)
    sys.exit(e.exit_code)
  except (ConfigError, DataError, WorkdirBusyError, WorkdirError, RunError, RecordError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
