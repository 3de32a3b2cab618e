"""The only driver: a config and a workdir in, every iteration trained, evaluated and summarised.

`run(config, workdir)`: the config is checked whole (`uadjax.config.validate`) and the data loads
before anything is written; then the workdir is locked (`uadjax.run.lock`: one run per workdir),
checked against the saved config and data (a resume must use the same) and config.json written;
training stops cleanly on SIGTERM / SIGINT (`uadjax.run.stop`). A workdir that cannot be written
is refused before the data is read, and a write that fails later (a full disk) is one line
naming it (`uadjax.run.storage`). An iteration whose training diverges is stopped and recorded
as such, in whichever phase (`uadjax.protocol.divergence`); the others go on. The family's phases
(`uadjax.families`, f-AnoGAN: the GAN) train first, each in its folder, then the scored phase;
an iteration finished in a phase (its record or metrics.json exists) is not trained again in it,
and each phase resumes from its own 'latest' checkpoints. The workdir's layout is
`uadjax.run.layout`'s.
"""

from __future__ import annotations

import contextlib
import functools
import os

import jax
import ml_collections
from absl import logging

from uadjax import config as config_lib
from uadjax import families, io
from uadjax.protocol import divergence, evaluate, fit, summaries
from uadjax.protocol.group import iteration_groups, train_groups
from uadjax.protocol.setup import Protocol
from uadjax.run import fingerprint as fingerprint_lib
from uadjax.run import lock as lock_lib
from uadjax.run import records, stop, storage
from uadjax.run.layout import RunDir


def check_data(fingerprint: dict, workdir: str) -> None:
  """Refuses to continue a workdir whose run was trained on other data (other images, pixels
  or labels than `fingerprint`); a run saved before fingerprints existed is not checked."""
  path = RunDir(workdir).config
  if not os.path.exists(path):
    return
  saved = io.read_json(path).get('data_fingerprint')
  if saved is None:
    logging.info('%s records no data fingerprint (an older run): data not checked.', path)
    return
  changed = fingerprint_lib.differences(saved, fingerprint)
  if changed:
    raise config_lib.ConfigError(
      f'{path}: this run was trained on other data ({changed}). Use another --workdir for '
      'the new data, or restore the data to resume.'
    )


def save_config(config: ml_collections.ConfigDict, workdir: str, fingerprint: dict) -> None:
  """Writes config.json, with the data's fingerprint (the first file of a run, once its data
  has loaded and the config has been checked)."""
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    record = {**config_lib.as_json(config), 'data_fingerprint': fingerprint}
    io.write_json(RunDir(workdir).config, record)


@contextlib.contextmanager
def open_run(config: ml_collections.ConfigDict, workdir: str, protocol: Protocol):
  """The workdir of a run, held for the block: locked (one run per workdir), checked against
  the saved config and data (a resume must use the same), config.json written; inside,
  SIGTERM and SIGINT stop training cleanly (`uadjax.run.stop`)."""
  lock = lock_lib.WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock, stop.handling():
    config_lib.check_resume(config, workdir)
    check_data(protocol.fingerprint, workdir)
    save_config(config, workdir, protocol.fingerprint)
    yield


def finished_results(run_dir: RunDir, iterations: list[int]) -> dict[int, dict]:
  """{iteration: metrics} of the given iterations that are already done in the workdir (a
  diverged one is done: its metrics.json records the divergence)."""
  results = {}
  for i in iterations:
    path = run_dir.metrics(i)
    if os.path.exists(path):
      results[i] = records.read_metrics(path)
      diverged = records.is_diverged(results[i])
      logging.info('Iteration %d: already done%s (%s).', i, ' (diverged)' * diverged, path)
  return results


def diverged_writer(protocol: Protocol, run_dir: RunDir, phase: str, results: dict):
  """`on_diverged(iteration, found, history)` for the groups of a phase ('' the scored one):
  writes the iteration's metrics.json (`records.DivergedRecord`: the iteration is done, in
  every phase) and adds it to `results`."""

  def on_diverged(i, found, history):
    record = divergence.record(protocol.splits[i], phase, found, history)
    if jax.process_index() == 0:
      io.write_json(run_dir.metrics(i), record)
    results[i] = record

  return on_diverged


def _train_phase(
  config, phase, phase_protocol: Protocol, run_dir: RunDir, todo, on_diverged
) -> None:
  """Trains the iterations of `todo` whose phase record is not written yet."""
  folder = run_dir.of_phase(phase.name)
  pending = [i for i in todo if not os.path.exists(folder.record(i, phase.record))]
  groups, parallel = iteration_groups(config, pending)
  logging.info('Phase %s: iterations %s.', phase.name, pending)

  def finish(i, carry, history):
    phase.finish(phase_protocol, folder, i, carry, history)

  on_checkpoint = None
  if phase.on_checkpoint is not None:
    on_checkpoint = functools.partial(phase.on_checkpoint, phase_protocol, folder)
  train_groups(phase_protocol, folder, groups, parallel, finish, on_checkpoint, on_diverged)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) the whole protocol; returns the summary."""
  config_lib.validate(config)  # before anything is read or written
  # A folder that cannot be written is refused before the data is read (a write, not the
  # permission bits, tells: root ignores the bits, a read-only mount ignores root).
  storage.check_writable(workdir)
  family = families.get(config.model_name)
  run_dir = RunDir(workdir)
  # The data loads (and any error in it is raised) before anything is written to the workdir.
  phases = [
    (phase, Protocol(phase.config(config), task_class=phase.task, selection=phase.selection))
    for phase in family.phases
  ]
  hand_overs = tuple(
    functools.partial(phase.hand_over, run_dir.of_phase(phase.name))
    for phase in family.phases
    if phase.hand_over is not None
  )
  protocol = Protocol(config, hand_overs=hand_overs)
  iterations = config_lib.selected_iterations(config, len(protocol.splits))
  # Any write that fails in the workdir (a full disk mid-run) is one line naming it (exit 2).
  with storage.reported(workdir), open_run(config, workdir, protocol):
    results = finished_results(run_dir, iterations)
    todo = [i for i in iterations if i not in results]
    for phase, phase_protocol in phases:
      on_diverged = diverged_writer(phase_protocol, run_dir, phase.name, results)
      _train_phase(config, phase, phase_protocol, run_dir, todo, on_diverged)
      todo = [i for i in todo if i not in results]  # diverged in this phase: stopped there

    if protocol.task.fit_only:
      board = summaries.Summaries(protocol, run_dir)

      def finish_fitted(i, carry, history, score_fn):
        board.log_fitted(i, history, carry.best)
        results[i] = evaluate.finish_iteration(protocol, run_dir, i, carry, history, score_fn)

      logging.info('%d iterations to fit (%s).', len(todo), jax.devices()[0].device_kind)
      try:
        fit.fit_iterations(protocol, todo, finish_fitted)
      finally:
        board.close()
      return _summarize(config, workdir, protocol, [results[i] for i in iterations])

    groups, parallel = iteration_groups(config, todo)
    if config.cv.parallel and not parallel:
      logging.warning(
        'augment.backend=albumentations runs on the host: iterations run one '
        'after another (cv.parallel ignored).'
      )
    logging.info(
      '%d iterations to train (%s), %d devices: %s',
      len(todo),
      'fold-parallel' if parallel else 'sequential',
      jax.device_count(),
      jax.devices()[0].device_kind,
    )

    def finish(i, carry, history):
      results[i] = evaluate.finish_iteration(protocol, run_dir, i, carry, history)

    on_diverged = diverged_writer(protocol, run_dir, '', results)
    train_groups(protocol, run_dir, groups, parallel, finish, on_diverged=on_diverged)
    return _summarize(config, workdir, protocol, [results[i] for i in iterations])


def _summarize(config, workdir: str, protocol: Protocol, ordered: list[dict]) -> dict:
  """The summary of the iterations' results, written by process 0."""
  if jax.process_index() != 0:
    return evaluate.summarize(config, ordered)
  return evaluate.write_summary(config, workdir, ordered, note=protocol.task.note())
