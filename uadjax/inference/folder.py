"""What a finished run's folder says: its config, its finished and diverged iterations.

Attributes:
  RunError: a workdir that cannot give what was asked (no config, no checkpoints, another image
    size); the message names the path.
  load_config: the run's `config.json` as a ConfigDict, checked as at the start of a run.
  finished_iterations: the iterations with a `metrics.json` of test metrics, and those metrics.
  diverged_iterations: the iterations whose `metrics.json` records a divergence.
"""

from __future__ import annotations

import os

import ml_collections

from uadjax import config as config_lib
from uadjax import io
from uadjax.run import records
from uadjax.run.layout import RunDir


class RunError(ValueError):
  """A workdir that cannot give what was asked; the message names the path."""


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config. JSON turned its tuples into lists, which every consumer accepts."""
  path = RunDir(workdir).config
  if not os.path.isfile(path):
    raise RunError(f'{workdir}: no config.json here; is this a uadjax run folder?')
  record = io.read_json(path)
  if isinstance(record.get('data_fingerprint'), dict):
    # Its per-image digests are keyed by file name ('000.png'), which a ConfigDict refuses (a
    # dot); a finished run's readers need only the overall digest (tables.study_row_for).
    record['data_fingerprint'] = {
      k: v for k, v in record['data_fingerprint'].items() if k != 'images'
    }
  config = ml_collections.ConfigDict(record)
  try:
    # The same checks as at the start of a run (the model's trace aside: it trained).
    config_lib.validate(config, check_model=False)
  except config_lib.ConfigError as e:
    raise RunError(f'{path}: {e}') from e
  return config


def _all_metrics(workdir: str) -> dict[int, dict]:
  if not os.path.isdir(workdir):
    raise RunError(f'{workdir}: no such run folder.')
  run = RunDir(workdir)
  return {i: records.read_metrics(run.metrics(i)) for i in run.iterations_with('metrics.json')}


def finished_iterations(workdir: str) -> dict[int, dict]:
  """{iteration: metrics} of every `iter_XX/metrics.json` in the workdir with test metrics, in
  order; a diverged iteration (`diverged_iterations`) has none and is left out."""
  return {i: m for i, m in _all_metrics(workdir).items() if not records.is_diverged(m)}


def diverged_iterations(workdir: str) -> dict[int, dict]:
  """{iteration: its record's 'diverged' entry} of the diverged iterations, in order."""
  return {i: m['diverged'] for i, m in _all_metrics(workdir).items() if records.is_diverged(m)}
