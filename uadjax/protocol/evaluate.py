"""The end of an iteration and of a run: the threshold on validation, the test metrics (and the
test-only class's), metrics.json, and the summary with its table and figures.

For each iteration the threshold is chosen on the validation scores of the selected variables
(study: best F1; the classifier: 0.5) and applied once to the test set. A test-only class
(`data.extra_test_classes`) is scored against the test normals too. The summary is mean ±
population std over the iterations.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from uadjax import data, families, io
from uadjax.evaluation import metrics as metrics_lib
from uadjax.protocol import divergence
from uadjax.protocol.setup import Protocol
from uadjax.run import checkpoint, records
from uadjax.run import fingerprint as fingerprint_lib
from uadjax.run.layout import RunDir
from uadjax.train.loop import Carry, score_all, score_parts_all


def _diverged(split, carry: Carry, history: dict, bad: str) -> dict:
  """The record of an iteration whose selected model gives scores that are not finite."""
  epoch = int(carry.best_epoch)
  losses = dict(zip(history['epoch'], history['train_loss'], strict=True))
  kept = history.get('selected_candidate') or f'selected at epoch {epoch}'
  found = {
    'epoch': epoch,
    'loss': losses.get(epoch, float('nan')),
    'reason': f'the model ({kept}) gives scores that are not finite ({bad})',
  }
  return divergence.record(split, '', found, history)


def _record(protocol: Protocol, iteration: int, carry: Carry, history: dict, scores: dict):
  """The iteration's `IterationRecord`: its split, history, selection, threshold (chosen on
  the validation scores) and test metrics."""
  c, split = protocol.config, protocol.splits[iteration]
  labels, names = protocol.dataset.labels, protocol.dataset.names
  val_scores, test_scores = scores['validation'], scores['test']
  threshold = metrics_lib.select_threshold(
    val_scores,
    labels[split.val],
    c.cv.threshold,
    c.cv.threshold_quantile,
    c.cv.get('threshold_value', 0.5),
  )
  fitted = protocol.task.fit_only
  return records.IterationRecord(
    iteration=iteration,
    normal_fold=split.normal_fold,
    abnormal_half=split.abnormal_half,
    n_train=len(split.train),
    n_val=len(split.val),
    n_test=len(split.test),
    history={'epoch': history['epoch'], 'train_loss': history['train_loss']},
    validation={
      **({'candidate': history['candidate']} if fitted else {'epoch': history['val_epoch']}),
      'auc': history['val_auc'],
      'loss': history['val_loss'],
    },
    selection=c.cv.selection,
    selected_epoch=None if fitted else int(carry.best_epoch),
    selected_candidate=history.get('selected_candidate'),
    selection_metric=float(carry.best_metric),
    threshold={'method': c.cv.threshold, 'value': threshold},
    val_scores=[float(s) for s in val_scores],
    val_labels=[int(v) for v in labels[split.val]],
    val_names=[names[i] for i in split.val],
    test=metrics_lib.classification_metrics(test_scores, labels[split.test], threshold),
    test_scores=[float(s) for s in test_scores],
    test_labels=[int(v) for v in labels[split.test]],
    test_names=[names[i] for i in split.test],
  )


def _extra_test(protocol: Protocol, split, test_scores, extra_scores, extra, threshold) -> dict:
  """The test-only class (data.extra_test_classes: DRIMDB's outliers) against the test
  normals, with the same variables and threshold."""
  labels = protocol.dataset.labels
  normal_test = split.test[labels[split.test] == 0]
  scores = np.concatenate([test_scores[labels[split.test] == 0], extra_scores])
  binary = np.concatenate([np.zeros(len(normal_test), int), np.ones(extra.size, int)])
  return {
    'classes': list(data.option(protocol.config.data, 'extra_test_classes')),
    'metrics': metrics_lib.classification_metrics(scores, binary, threshold),
    'scores': [float(v) for v in extra_scores],
    'names': [protocol.dataset.names[i] for i in extra],
  }


def evaluate(
  protocol: Protocol, iteration: int, carry: Carry, history: dict, score_fn=None
) -> dict:
  """Threshold on validation, metrics on test, with the selected variables of `carry`; a
  diverged iteration's record (`uadjax.protocol.divergence`) where their scores are not
  finite (no threshold or metric is computed from them).

  `score_fn(variables, indices) -> scores` scores dataset images (default: the engine's
  scoring program on the images; a fitted task's: from the features computed once). A fitted
  task's `history` names its candidates ('candidate') instead of epochs.
  """
  split = protocol.splits[iteration]
  labels = protocol.dataset.labels
  variables = jax.device_put(carry.best)
  if score_fn is None:
    images = jax.device_put(protocol.dataset.images)

    def score_fn(variables, indices):
      return score_all(protocol.engine, variables, images, indices)[0]

  scores = {'validation': score_fn(variables, split.val), 'test': score_fn(variables, split.test)}
  bad = divergence.non_finite_scores(scores)
  if bad:
    return _diverged(split, carry, history, bad)
  record = _record(protocol, iteration, carry, history, scores)
  extra = np.flatnonzero(labels == 2)
  if extra.size:
    record.extra_test = _extra_test(
      protocol, split, scores['test'], score_fn(variables, extra), extra, record.threshold['value']
    )
  # A score that is a sum (f-AnoGAN: image + kappa x feature residual) keeps its terms per test
  # image, so the histograms can show each.
  if protocol.task.composite_score:
    images = jax.device_put(protocol.dataset.images)
    parts = score_parts_all(protocol.engine, variables, images, split.test)
    record.test_score_parts = {k: [float(v) for v in p] for k, p in parts.items()}
  return record.to_json()


def finish_iteration(
  protocol: Protocol,
  run_dir: RunDir,
  iteration: int,
  carry: Carry,
  history: dict,
  score_fn=None,
) -> dict:
  """Saves the best checkpoint, evaluates, and writes metrics.json (last: it marks 'done').

  `score_fn`: see `evaluate`. A fitted task's checkpoint has no epoch; neither holds the
  task's frozen variables (a pretrained backbone: `Task.frozen_variables`).
  """
  # image_shape: what the variables were trained on, so a user of the checkpoint is told when
  # their images would be preprocessed to another size.
  saved = {
    **carry.best,
    'metric': carry.best_metric,
    'image_shape': np.asarray(protocol.image_shape, np.int32),
  }
  if not protocol.task.fit_only:
    saved['epoch'] = carry.best_epoch
  checkpoint.save(run_dir.best(iteration), saved)
  result = evaluate(protocol, iteration, carry, history, score_fn)
  if jax.process_index() == 0:
    io.write_json(run_dir.metrics(iteration), result)
  if records.is_diverged(result):
    logging.error('%s', result['diverged']['message'])
    return result
  t = result['test']
  chosen = result.get('selected_candidate') or f'best epoch {result["selected_epoch"]}'
  logging.info(
    'Iteration %d done: %s, test AUC %.3f, F1 %.3f, threshold %.4g.',
    iteration,
    chosen,
    t['auc'],
    t['f1'],
    result['threshold']['value'],
  )
  return result


def summarize(config, results: list[dict]) -> dict:
  """mean ± population std over iterations of the test metrics (and of the test-only class's);
  a diverged iteration is left out of them and listed under 'diverged' ({'iteration', 'phase',
  'epoch', 'loss', 'reason'})."""
  diverged = [r for r in results if records.is_diverged(r)]
  results = [r for r in results if not records.is_diverged(r)]
  summary = {
    'model': config.model_name,
    'n_iterations': len(results),
    'iterations': [r['iteration'] for r in results],
    'metrics': metrics_lib.summarize([r['test'] for r in results]) if results else {},
  }
  if diverged:
    summary['diverged'] = [
      {'iteration': r['iteration'], **{k: v for k, v in r['diverged'].items() if k != 'message'}}
      for r in diverged
    ]
  if all('extra_test' in r for r in results) and results:
    summary['extra_test'] = {
      'classes': results[0]['extra_test']['classes'],
      'metrics': metrics_lib.summarize([r['extra_test']['metrics'] for r in results]),
    }
  return summary


def write_summary(config, workdir: str, results: list[dict], note: str = '') -> dict:
  """summary.json, summary.md and the figures of a finished run.

  Optional config fields: `study_row` (the study row to set beside the results, '' for none;
  by default the head-CT row of the model) and `study_note` (a sentence for the title, e.g. that
  the study's row is of another data set). `note`: the task's line for the title (`Task.note`).
  """
  from uadjax.reports import figures, tables  # matplotlib only when reports are written

  run_dir = RunDir(workdir)
  summary = summarize(config, results)
  results = [r for r in results if not records.is_diverged(r)]
  io.write_json(run_dir.summary_json, summary)
  recorded = io.read_json(run_dir.config).get('data_fingerprint')
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
  if note:
    title += f'; {note}'
  if config.data.source == 'phantoms':
    title += ' (synthetic phantoms; the study rows are real head CT and are not shown)'
  if results:
    markdown = tables.summary_markdown(
      summary,
      title=title,
      study_model=study_model,
      per_iteration=results,
    )
  else:
    markdown = f'## {title}\n\nEvery iteration diverged: there are no test metrics.\n'
  if 'extra_test' in summary:
    markdown += tables.extra_test_markdown(summary)
  if 'diverged' in summary:
    markdown += diverged_markdown(summary['diverged'])
  io.write_text(run_dir.summary_md, markdown)
  if config.cv.figures and results:
    metrics_paths = [run_dir.metrics(int(r['iteration'])) for r in results]
    figures.write_run_figures(results, run_dir.figures, figures.drawn_from(metrics_paths))
  return summary


def diverged_markdown(diverged: list[dict]) -> str:
  """The summary's section of diverged iterations: which, in which phase, at which epoch, the
  loss there and why."""
  lines = [
    '',
    f'**{len(diverged)} iteration{"s" * (len(diverged) > 1)} diverged**, left out of the '
    'test metrics (`uadjax.protocol.divergence`):',
    '',
    '| Iteration | Phase | Epoch | Training loss | Why |',
    '| --- | --- | --- | --- | --- |',
  ]
  for d in diverged:
    phase = d.get('phase') or 'scored'
    lines.append(f'| {d["iteration"]} | {phase} | {d["epoch"]} | {d["loss"]:.4g} | {d["reason"]} |')
  return '\n'.join(lines) + '\n'


def format_summary(summary: dict, workdir: str) -> str:
  """The summary table as the entry point prints it."""
  path = RunDir(workdir).summary_md
  if os.path.exists(path):
    with open(path) as f:
      return f.read()
  m = summary['metrics']
  return ' '.join(f'{k} {m[k]["mean"]:.3f}±{m[k]["std"]:.3f}' for k in m)
