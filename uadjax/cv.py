"""The study's protocols: splits in, per-iteration results and a summary out.

`cv.scheme`: '2x5' (head CT: ten iterations of the 2x5 cross-validation, the default) or
'holdout' (fundus: one seeded split, iteration 0). For each iteration: train on normal images
only (a supervised task, the fundus classifier, on both classes); every `cv.val_every` epochs
score the validation set and keep the checkpoint with the best selection metric (study:
validation AUC; the classifier: validation loss); choose the threshold on the validation scores
(study: best F1; the classifier: 0.5); apply both once to the test set. A test-only class
(`data.extra_test_classes`) is scored against the test normals too. The summary is mean ±
population std over the iterations.

Before anything is written the config is checked whole (`uadjax.config.validate`) and the data
loads; then the workdir is locked (`uadjax.run.lock`: one run per workdir), and training stops
cleanly on SIGTERM / SIGINT (`uadjax.run.stop`).

Workdir layout:
  .lock                            held by the run in progress (its pid, host, start time)
  config.json                      the config of the run (a resume must use the same) and the
                                   data's fingerprint (`uadjax.run.fingerprint`; the same data)
  iter_XX/checkpoints/best         selected variables (Orbax; see uadjax.checkpoint)
  iter_XX/checkpoints/latest/N     training carry at epoch N, for resuming
  iter_XX/history.json             losses and validation curve so far
  iter_XX/metrics.json             the iteration's result; its presence marks the iteration done
  progress.csv                     one row per iteration and compiled call: epoch, loss, val
                                   AUC, images/s, time left (the progress log, for plotting)
  summary.json, summary.md         mean ± std over iterations
  figures/*.png                    training curves, threshold selection, score histograms
  report/                          report.md and its figures (uadjax.reports.write_report)
"""

from __future__ import annotations

import contextlib
import csv
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from uadjax import checkpoint, data, families, io
from uadjax import config as config_lib
from uadjax.data import augment as augment_lib
from uadjax.data.splits import Split, cross_validation_splits, holdout_split
from uadjax.evaluation import metrics as metrics_lib
from uadjax.run import fingerprint as fingerprint_lib
from uadjax.run import lock as lock_lib
from uadjax.run import stop
from uadjax.train import classifier
from uadjax.train.loop import (
  Carry,
  Engine,
  FoldData,
  pad,
  score_all,
  score_parts_all,
  train_on_host,
)

CHECKPOINT_EVERY_S = 600
PROGRESS_COLUMNS = (
  'time',
  'iteration',
  'epoch',
  'epochs',
  'train_loss',
  'val_auc',
  'val_loss',
  'images_per_s',
  'seconds_left',
)


def check_data(fingerprint: dict, workdir: str) -> None:
  """Refuses to continue a workdir whose run was trained on other data (other images, pixels
  or labels than `fingerprint`); a run saved before fingerprints existed is not checked."""
  path = os.path.join(workdir, 'config.json')
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
    io.write_json(os.path.join(workdir, 'config.json'), record)


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


def iteration_dir(workdir: str, iteration: int) -> str:
  """The folder of one iteration."""
  return os.path.join(workdir, f'iter_{iteration:02d}')


SCHEMES = ('2x5', 'holdout')


def warn_small_classes(splits: list[Split], labels: np.ndarray) -> None:
  """Logs a warning where a split's validation or test set has too few abnormal images for
  its F1 threshold and metrics to mean much (fewer than 2), or no normal image."""
  for s in splits:
    for side, idx in (('validation', s.val), ('test', s.test)):
      positives = int(np.sum(labels[idx] == 1))
      negatives = int(np.sum(labels[idx] == 0))
      if positives < 2 or negatives < 1:
        logging.warning(
          'Iteration %d: its %s set has %d abnormal and %d normal images; the threshold and '
          'F1 need at least 2 and 1.',
          s.iteration,
          side,
          positives,
          negatives,
        )


def make_splits(config, dataset) -> list[Split]:
  """The splits `config.cv.scheme` names: '2x5' (the head-CT study, the default) or 'holdout'
  (the fundus study: one split, `cv.normal_fractions` / `cv.abnormal_fractions`)."""
  c = config.cv
  scheme = c.get('scheme', '2x5')
  if scheme == '2x5':
    return cross_validation_splits(
      dataset.labels, dataset.groups, seed=config.seed, n_folds=c.n_folds, n_halves=c.n_halves
    )
  if scheme == 'holdout':
    return [
      holdout_split(
        dataset.labels,
        dataset.groups,
        seed=config.seed,
        normal_fractions=tuple(c.normal_fractions),
        abnormal_fractions=tuple(c.abnormal_fractions),
      )
    ]
  raise ValueError(f'cv.scheme={scheme!r}; expected one of {SCHEMES}.')


class Protocol:
  """The data, splits, task and engine of one run; `run` drives it.

  `task_class`: another task of the family's model than its own (a phase's: f-AnoGAN's GAN).
  """

  def __init__(self, config: ml_collections.ConfigDict, task_class: type | None = None):
    self.config = config
    c = config
    self.dataset = data.load(c.data)
    self.fingerprint = fingerprint_lib.fingerprint(self.dataset, c.data)
    for group in self.dataset.duplicates():
      logging.info('Identical images (kept on one side of every split): %s', ', '.join(group))
    self.splits: list[Split] = make_splits(c, self.dataset)
    warn_small_classes(self.splits, self.dataset.labels)
    self.image_shape = self.dataset.images.shape[1:]
    bs = c.train.batch_size
    n_train = [len(s.train) for s in self.splits]
    if min(n_train) < bs:
      raise data.DataError(
        f'An iteration has {min(n_train)} training images, fewer than '
        f'train.batch_size={bs}: no full batch.'
      )
    # The engine runs max(steps) a epoch (smaller splits are padded and masked): the length
    # of a learning-rate schedule.
    self.task = families.make_task(
      c, steps_per_epoch=max(n // bs for n in n_train), task_class=task_class
    )
    if getattr(self.task, 'supervised', False):
      source = classifier.weights_source(self.task.pretrained)
      (logging.info if self.task.pretrained else logging.warning)('Classifier: %s.', source)
    self.n_train_max = max(n_train)
    self.n_val_max = -(-max(len(s.val) for s in self.splits) // c.train.score_batch) * (
      c.train.score_batch
    )
    steps = [n // bs for n in n_train]
    self.host_augment = None
    augment_fn = None
    if c.augment.backend == 'jax':
      cfg = c.augment
      augment_fn = lambda key, images: augment_lib.augment(key, images, cfg)
    elif c.augment.backend == 'albumentations':
      self.host_augment = augment_lib.host_augmenter(c.augment)
    else:
      raise config_lib.ConfigError(
        f"augment.backend={c.augment.backend!r}; expected 'jax' or 'albumentations'."
      )
    self.engine = Engine(
      self.task,
      augment_fn,
      bs,
      max(steps),
      len(set(steps)) == 1,
      c.cv.val_every,
      c.cv.selection,
      c.train.score_batch,
    )

  def iteration_key(self, iteration: int):
    """The PRNG key of one iteration (independent of which other iterations run)."""
    return jax.random.fold_in(jax.random.PRNGKey(self.config.seed), iteration)

  def fold_data(self, iteration: int) -> FoldData:
    """The padded device arrays of one iteration's split."""
    s = self.splits[iteration]
    train_idx, train_mask = pad(s.train, self.n_train_max)
    val_idx, val_mask = pad(s.val, self.n_val_max)
    labels = self.dataset.labels
    val_labels = np.where(val_mask, labels[val_idx], 0).astype(np.int32)
    train_labels = np.where(train_mask, labels[train_idx], 0).astype(np.int32)
    counts = np.bincount(labels[s.train], minlength=2)[:2].astype(np.float32)
    # Balanced cross-entropy weights n / (2 n_c) (a supervised task's; others ignore them).
    class_weights = np.where(counts > 0, len(s.train) / (2 * np.maximum(counts, 1)), 0.0)
    return FoldData(
      key=self.iteration_key(iteration),
      train_idx=train_idx,
      train_mask=train_mask,
      val_idx=val_idx,
      val_mask=val_mask,
      val_labels=val_labels,
      train_labels=train_labels,
      class_weights=class_weights.astype(np.float32),
    )

  def initial_carry(self, iteration: int) -> Carry:
    """The untrained carry of one iteration."""
    init_key = jax.random.fold_in(self.iteration_key(iteration), 2**31 - 1)
    return self.engine.initial_carry(init_key, self.image_shape)


class _Group:
  """Iterations trained together: one (sequential) or all (fold-parallel, vmapped, sharded)."""

  def __init__(self, protocol: Protocol, workdir: str, iterations: list[int], parallel: bool):
    self.p = protocol
    self.workdir = workdir
    self.iterations = iterations
    self.parallel = parallel
    self.latest = [
      checkpoint.Latest(os.path.join(iteration_dir(workdir, i), 'checkpoints', 'latest'))
      for i in iterations
    ]
    self.histories = [None] * len(iterations)
    self.mesh = None
    if parallel:
      devices = np.array(jax.devices())
      self.mesh = Mesh(devices, ('iterations',))
      # Pad the iteration axis to a multiple of the device count with copies of the first
      # iteration; their results are discarded.
      self.n_padded = -(-len(iterations) // len(devices)) * len(devices)
    else:
      self.n_padded = 1

  # -- moving carries between the host and the device ------------------------------------------

  def _put(self, trees: list, replicate: bool = False):
    if not self.parallel:
      return jax.tree.map(jnp.asarray, trees[0])
    trees = trees + [trees[0]] * (self.n_padded - len(trees))
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
    sharding = NamedSharding(self.mesh, PartitionSpec('iterations'))
    return jax.tree.map(
      lambda x: jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx]), stacked
    )

  def _get(self, tree) -> list:
    """Per-iteration numpy copies of a (possibly stacked, sharded) pytree."""
    if jax.process_count() > 1:
      tree = multihost_utils.process_allgather(tree, tiled=True)
    tree = jax.tree.map(np.asarray, tree)
    if not self.parallel:
      return [tree]
    return [jax.tree.map(lambda x, i=i: x[i], tree) for i in range(len(self.iterations))]

  def images(self):
    """The dataset's images on the device(s), replicated."""
    x = self.p.dataset.images
    if not self.parallel:
      return jnp.asarray(x)
    sharding = NamedSharding(self.mesh, PartitionSpec())
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  # -- resuming ----------------------------------------------------------------------------------

  def restore(self) -> list[Carry]:
    """Each iteration's carry at the most recent epoch all of them have saved, else fresh."""
    fresh = [self.p.initial_carry(i) for i in self.iterations]
    saved = [set(m.epochs()) for m in self.latest]
    common = set.intersection(*saved) if saved else set()
    epoch = max(common) if common else 0
    carries = []
    for k, i in enumerate(self.iterations):
      history_path = os.path.join(iteration_dir(self.workdir, i), 'history.json')
      history = {'epoch': [], 'train_loss': [], 'val_epoch': [], 'val_auc': [], 'val_loss': []}
      if epoch:
        carry = self.latest[k].restore(epoch, fresh[k])
        if os.path.exists(history_path):
          history = _truncate_history(io.read_json(history_path), epoch)
        logging.info('Iteration %d: resuming from epoch %d.', i, epoch)
      else:
        carry = fresh[k]
      carries.append(jax.tree.map(np.asarray, carry))
      self.histories[k] = history
    return carries

  def save_latest(self, carries: list[Carry]) -> None:
    for k, i in enumerate(self.iterations):
      epoch = int(carries[k].epoch)
      self.latest[k].save(epoch, carries[k])
      if jax.process_index() == 0:
        io.write_json(
          os.path.join(iteration_dir(self.workdir, i), 'history.json'), self.histories[k]
        )

  # -- training ------------------------------------------------------------------------------

  def train(self) -> list[Carry]:
    """Trains every iteration of the group to `train.epochs`; returns the final carries."""
    c = self.p.config
    engine = self.p.engine
    total = c.train.epochs
    carries = self.restore()
    epoch = int(carries[0].epoch)
    images = self.images()
    carry = self._put(carries)
    fold = self._put([self.p.fold_data(i) for i in self.iterations])
    label = f'iterations {self.iterations}' if self.parallel else f'iteration {self.iterations[0]}'
    per_call = max(1, c.cv.epochs_per_call // c.cv.val_every)
    last_save_epoch, last_save_time = epoch, time.time()
    start_time, start_epoch = time.time(), epoch
    images_per_epoch = engine.steps_per_epoch * engine.batch_size * len(self.iterations)
    if stop.requested() and epoch < total:
      raise stop.Stopped(
        f'Stopped before training {label} (at epoch {epoch}); rerun the same command to resume.',
        stop.requested(),
      )
    while epoch < total:
      validations = min(per_call, (total - epoch) // c.cv.val_every)
      if self.p.host_augment is not None:
        iteration = self.iterations[0]
        carry, logs = train_on_host(
          engine,
          carry,
          fold,
          images,
          self.p.dataset.images,
          self.p.splits[iteration].train,
          self.p.host_augment,
          validations,
          (c.seed, iteration),
          self.p.dataset.labels,
        )
      else:
        carry, logs = engine.compiled_train(validations, self.parallel)(carry, fold, images)
      logs = self._get(logs)
      epoch += validations * c.cv.val_every
      for k, log in enumerate(logs):
        self._append_history(k, log, epoch - validations * c.cv.val_every)
      self._log_progress(
        label, epoch, total, logs, carry, start_time, start_epoch, images_per_epoch
      )
      if (
        epoch - last_save_epoch >= c.cv.checkpoint_every
        or epoch == total
        or time.time() - last_save_time > CHECKPOINT_EVERY_S
      ):
        self.save_latest(self._get(carry))
        last_save_epoch, last_save_time = epoch, time.time()
      if stop.requested() and epoch < total:
        if last_save_epoch != epoch:
          self.save_latest(self._get(carry))
        raise stop.Stopped(
          f'{label}: saved at epoch {epoch}; rerun the same command to resume.', stop.requested()
        )
    if start_epoch == total:  # nothing to train: restored at the end
      return carries
    return self._get(carry)

  def _append_history(self, k: int, log: dict, first_epoch: int) -> None:
    h = self.histories[k]
    losses = np.asarray(log['train_loss']).reshape(-1)
    h['epoch'] += list(range(first_epoch + 1, first_epoch + 1 + len(losses)))
    h['train_loss'] += [float(v) for v in losses]
    h['val_epoch'] += [int(e) for e in np.asarray(log['epoch']).reshape(-1)]
    h['val_auc'] += [float(v) for v in np.asarray(log['val_auc']).reshape(-1)]
    h['val_loss'] += [float(v) for v in np.asarray(log['val_loss']).reshape(-1)]

  def _log_progress(
    self, label, epoch, total, logs, carry, start_time, start_epoch, images_per_epoch
  ) -> None:
    elapsed = time.time() - start_time
    done = epoch - start_epoch
    rate = done * images_per_epoch / max(elapsed, 1e-9)
    eta = elapsed / max(done, 1) * (total - epoch)
    losses = [float(np.asarray(log['train_loss'])[-1, -1]) for log in logs]
    loss = np.mean(losses)
    aucs = [float(np.asarray(log['val_auc'])[-1]) for log in logs]
    if jax.process_index() == 0:
      # The same figures as a CSV log, one row per iteration, so a long run can be plotted
      # while it trains (no TensorBoard dependency needed).
      val_losses = [float(np.asarray(log['val_loss'])[-1]) for log in logs]
      rows = [
        (f'{time.time():.1f}', i, epoch, total, f'{lo:.6g}', f'{a:.4f}', f'{vl:.6g}')
        + (f'{rate:.1f}', f'{eta:.0f}')
        for i, lo, a, vl in zip(self.iterations, losses, aucs, val_losses, strict=True)
      ]
      _append_csv(os.path.join(self.workdir, 'progress.csv'), PROGRESS_COLUMNS, rows)
    logging.info(
      '%s: epoch %d/%d  loss %.5f  val AUC %s  %.0f img/s  %s left',
      label,
      epoch,
      total,
      loss,
      ' '.join(f'{a:.3f}' for a in aucs),
      rate,
      _duration(eta),
    )


def _truncate_history(history: dict, epoch: int) -> dict:
  """The entries of a saved history up to `epoch` (the history may be newer than the
  checkpoint it is resumed from)."""
  out = {}
  for key, values in history.items():
    epochs = history['val_epoch' if key.startswith('val') else 'epoch']
    out[key] = [v for v, e in zip(values, epochs, strict=True) if e <= epoch]
  return out


def _append_csv(path: str, header, rows) -> None:
  """Appends rows to a CSV file, writing the header first if the file is new."""
  new = not os.path.exists(path)
  with open(path, 'a', newline='') as f:
    writer = csv.writer(f)
    if new:
      writer.writerow(header)
    writer.writerows(rows)


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  if seconds >= 3600:
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
  return f'{seconds // 60}m{seconds % 60:02d}s'


def evaluate(protocol: Protocol, iteration: int, carry: Carry, history: dict) -> dict:
  """Threshold on validation, metrics on test, with the selected variables of `carry`."""
  c = protocol.config
  split = protocol.splits[iteration]
  labels = protocol.dataset.labels
  images = jnp.asarray(protocol.dataset.images)
  variables = jax.tree.map(jnp.asarray, carry.best)
  val_scores, _ = score_all(protocol.engine, variables, images, split.val)
  test_scores, _ = score_all(protocol.engine, variables, images, split.test)
  threshold = metrics_lib.select_threshold(
    val_scores,
    labels[split.val],
    c.cv.threshold,
    c.cv.threshold_quantile,
    c.cv.get('threshold_value', 0.5),
  )
  test = metrics_lib.classification_metrics(test_scores, labels[split.test], threshold)
  result = {
    'iteration': iteration,
    'normal_fold': split.normal_fold,
    'abnormal_half': split.abnormal_half,
    'n_train': len(split.train),
    'n_val': len(split.val),
    'n_test': len(split.test),
    'history': {'epoch': history['epoch'], 'train_loss': history['train_loss']},
    'validation': {
      'epoch': history['val_epoch'],
      'auc': history['val_auc'],
      'loss': history['val_loss'],
    },
    'selection': c.cv.selection,
    'selected_epoch': int(carry.best_epoch),
    'selection_metric': float(carry.best_metric),
    'threshold': {'method': c.cv.threshold, 'value': threshold},
    'val_scores': [float(s) for s in val_scores],
    'val_labels': [int(v) for v in labels[split.val]],
    'test': test,
    'test_scores': [float(s) for s in test_scores],
    'test_labels': [int(v) for v in labels[split.test]],
    'test_names': [protocol.dataset.names[i] for i in split.test],
  }
  extra = np.flatnonzero(labels == 2)
  if extra.size:
    # The test-only class (data.extra_test_classes: DRIMDB's outliers) against the test
    # normals, with the same variables and threshold.
    extra_scores, _ = score_all(protocol.engine, variables, images, extra)
    normal_test = split.test[labels[split.test] == 0]
    scores = np.concatenate([test_scores[labels[split.test] == 0], extra_scores])
    binary = np.concatenate([np.zeros(len(normal_test), int), np.ones(extra.size, int)])
    result['extra_test'] = {
      'classes': list(c.data.get('extra_test_classes', ())),
      'metrics': metrics_lib.classification_metrics(scores, binary, threshold),
      'scores': [float(v) for v in extra_scores],
      'names': [protocol.dataset.names[i] for i in extra],
    }
  # A score that is a sum (f-AnoGAN: image + kappa x feature residual) keeps its terms per test
  # image, so the histograms can show each.
  score_parts = getattr(protocol.task, 'score_parts', None)
  if score_parts is not None:
    parts = score_parts_all(protocol.engine, variables, images, split.test)
    result['test_score_parts'] = {k: [float(v) for v in p] for k, p in parts.items()}
  return result


def finish_iteration(
  protocol: Protocol, workdir: str, iteration: int, carry: Carry, history: dict
) -> dict:
  """Saves the best checkpoint, evaluates, and writes metrics.json (last: it marks 'done')."""
  folder = iteration_dir(workdir, iteration)
  checkpoint.save(
    os.path.join(folder, 'checkpoints', 'best'),
    # image_shape: what the variables were trained on, so a user of the checkpoint is told
    # when their images would be preprocessed to another size.
    {
      **carry.best,
      'epoch': carry.best_epoch,
      'metric': carry.best_metric,
      'image_shape': np.asarray(protocol.image_shape, np.int32),
    },
  )
  result = evaluate(protocol, iteration, carry, history)
  if jax.process_index() == 0:
    io.write_json(os.path.join(folder, 'metrics.json'), result)
  t = result['test']
  logging.info(
    'Iteration %d done: best epoch %d, test AUC %.3f, F1 %.3f, threshold %.4g.',
    iteration,
    result['selected_epoch'],
    t['auc'],
    t['f1'],
    result['threshold']['value'],
  )
  return result


def summarize(config, results: list[dict]) -> dict:
  """mean ± population std over iterations of the test metrics (and of the test-only class's)."""
  summary = {
    'model': config.model_name,
    'n_iterations': len(results),
    'iterations': [r['iteration'] for r in results],
    'metrics': metrics_lib.summarize([r['test'] for r in results]),
  }
  if all('extra_test' in r for r in results) and results:
    summary['extra_test'] = {
      'classes': results[0]['extra_test']['classes'],
      'metrics': metrics_lib.summarize([r['extra_test']['metrics'] for r in results]),
    }
  return summary


def write_summary(config, workdir: str, results: list[dict]) -> dict:
  """summary.json, summary.md and the figures of a finished run.

  Optional config fields: `study_row` (the study row to set beside the results, '' for none;
  by default the head-CT row of the model) and `study_note` (a sentence for the title, e.g. that
  the study's row is of another data set).
  """
  from uadjax.reports import figures, tables  # matplotlib only when reports are written

  summary = summarize(config, results)
  io.write_json(os.path.join(workdir, 'summary.json'), summary)
  recorded = io.read_json(os.path.join(workdir, 'config.json')).get('data_fingerprint')
  study_model = tables.study_row_for(config, recorded)
  title = f'{config.model_name} on {workdir}'
  if config.get('study_note'):
    title += f' ({config.study_note})'
  if study_model is None and fingerprint_lib.is_study_data(recorded) is False:
    family = families.FAMILIES.get(config.get('model_name'))
    if (
      family
      and family.study
      and family.study.data == families.HEAD_CT
      and ('study_row' not in config)
    ):
      title += " (not the study's head-CT set: the study's rows are not shown)"
  if config.get('task') and 'pretrained' in config.task:
    title += f'; {classifier.weights_source(config.task.pretrained)}'
  if config.data.source == 'phantoms':
    title += ' (synthetic phantoms; the study rows are real head CT and are not shown)'
  markdown = tables.summary_markdown(
    summary,
    title=title,
    study_model=study_model,
    per_iteration=results,
  )
  if 'extra_test' in summary:
    markdown += tables.extra_test_markdown(summary)
  io.write_text(os.path.join(workdir, 'summary.md'), markdown)
  if config.cv.figures:
    figures.write_run_figures(results, os.path.join(workdir, 'figures'))
  return summary


def finished_results(workdir: str, iterations: list[int]) -> dict[int, dict]:
  """{iteration: metrics} of the given iterations that are already done in the workdir."""
  results = {}
  for i in iterations:
    path = os.path.join(iteration_dir(workdir, i), 'metrics.json')
    if os.path.exists(path):
      results[i] = io.read_json(path)
      logging.info('Iteration %d: already done (%s).', i, path)
  return results


def iteration_groups(config, todo: list[int]) -> tuple[list[list[int]], bool]:
  """The iterations trained together (all at once when fold-parallel, else one by one) and
  whether that is fold-parallel."""
  parallel = bool(config.cv.parallel) and config.augment.backend == 'jax'
  if jax.process_count() > 1 and not parallel:
    # Several processes share the work only by sharding the iteration axis of one group.
    raise config_lib.ConfigError(
      f'{jax.process_count()} processes need the fold-parallel mode: cv.parallel=True and '
      f"augment.backend='jax' (got cv.parallel={config.cv.parallel}, "
      f'augment.backend={config.augment.backend!r}).'
    )
  return ([todo] if parallel and todo else [[i] for i in todo]), parallel


def train_groups(protocol, workdir, groups, parallel, finish, group_class=None) -> None:
  """Trains each group of iterations and calls `finish(iteration, carry, history)` on each;
  the 'latest' checkpoint managers are closed however training ends (a clean stop too)."""
  for group_iterations in groups:
    group = (group_class or _Group)(protocol, workdir, group_iterations, parallel)
    try:
      carries = group.train()
      for k, i in enumerate(group_iterations):
        finish(i, carries[k], group.histories[k])
    finally:
      for m in group.latest:
        m.close()


def train_iterations(protocol: Protocol, workdir: str, iterations: list[int]) -> dict[int, dict]:
  """Trains and evaluates the iterations not yet done; returns every iteration's metrics."""
  config = protocol.config
  results = finished_results(workdir, iterations)
  todo = [i for i in iterations if i not in results]
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
    results[i] = finish_iteration(protocol, workdir, i, carry, history)

  train_groups(protocol, workdir, groups, parallel, finish)
  return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) the whole protocol; returns the summary."""
  if 'gan' in config:
    # f-AnoGAN: a GAN phase before this protocol, which then trains its encoder.
    from uadjax import fanogan_cv

    return fanogan_cv.run(config, workdir)
  config_lib.validate(config)  # before anything is read or written
  # The data loads (and any error in it is raised) before anything is written to the workdir.
  protocol = Protocol(config)
  iterations = config_lib.selected_iterations(config, len(protocol.splits))
  with open_run(config, workdir, protocol):
    results = train_iterations(protocol, workdir, iterations)
    ordered = [results[i] for i in iterations]
    if jax.process_index() != 0:
      return summarize(config, ordered)
    return write_summary(config, workdir, ordered)


def format_summary(summary: dict, workdir: str) -> str:
  """The summary table as the entry point prints it."""
  path = os.path.join(workdir, 'summary.md')
  if os.path.exists(path):
    with open(path) as f:
      return f.read()
  m = summary['metrics']
  return ' '.join(f'{k} {m[k]["mean"]:.3f}±{m[k]["std"]:.3f}' for k in m)
