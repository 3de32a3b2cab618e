"""Score fusion: finished runs on the same data and splits, combined into one run folder.

Attributes:
  EnsembleError: members that cannot be fused (other data, other splits, another preprocessing);
    the message names the runs, the iteration and what differs (`uadjax.inference.fused`'s).
  is_ensemble, standardisation: whether a run's config is a fused run's; a member's (mean, std)
    of one iteration's validation normals (both `uadjax.inference.fused`'s, which reads a fused
    run back).
  candidates: the rules tried: the mean of the standardised scores, then a grid of weights.
  choose_rule: the candidate with the best mean validation AUC.
  fuse: reads the members' saved scores, chooses the rule and writes the fused run folder.
  markdown: the members and the fused run side by side (validation and test AUC).

A fused run's models (`uadjax.inference.EnsembleModel`: the members' models and the saved rule,
with the `IterationModel` interface) come from `uadjax.inference.load_models`, like any run's.

How the scores are fused (every choice on validation only; nothing is scored again):
  1. Per iteration, each member's scores are standardised on that iteration's validation
     normals: z = (score - mean) / std, mean and std over the validation images labelled 0
     (std 1 where they all scored alike). Test scores play no part.
  2. The fused score is sum_k w_k z_k. The weights are chosen, once for all iterations, by the
     mean validation AUC over the iterations among `candidates`: the mean (equal weights) first,
     then every weight vector of the grid (step 0.25: {0, 0.25, ..., 1}, summing to 1); a tie
     keeps the earlier candidate, so the mean wins a tie.
  3. Per iteration the threshold is chosen on the fused validation scores (F1, as a run's) and
     applied once to the fused test scores.
The fused run folder is read like any other by `experiments.report`, `compare` and `predict`:
config.json (the first member's data and protocol, `model_name` 'ensemble', the members'
absolute paths and the rule under `ensemble`), iter_XX/metrics.json (fused scores, threshold,
and under `ensemble` the weights and each member's mean and std of that iteration), summary.json
and summary.md, and ensemble.md (the members beside the fused run). predict scores new images
with every member's model of the iteration (those of weight 0 are not loaded), standardises
with the saved statistics, combines with the saved weights and applies the saved threshold.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time

import numpy as np
from absl import logging

from uadjax import data, families, inference, io
from uadjax.evaluation import metrics as metrics_lib
from uadjax.inference.fused import (
  EnsembleError,
  is_ensemble,
  standardisation,
)
from uadjax.protocol import evaluate
from uadjax.run import fingerprint as fingerprint_lib
from uadjax.run import records
from uadjax.run.layout import RunDir

MODEL_NAME = 'ensemble'
THRESHOLDS = ('f1', 'normal_quantile')
ENSEMBLE_MD = 'ensemble.md'

# Config fields that make the splits (with the data: `uadjax.data.splits.make_splits`).
_SPLIT_FIELDS = (
  'seed',
  'cv.scheme',
  'cv.n_folds',
  'cv.n_halves',
  'cv.normal_fractions',
  'cv.abnormal_fractions',
)
# Data fields that make the images a model sees, but for their size: predict and the report read
# new images once at each member's size, with these settings.
_IMAGE_FIELDS = ('preprocess', 'dicom_window')
# The split of an iteration, as its metrics.json gives it.
_SPLIT_KEYS = ('iteration', 'normal_fold', 'abnormal_half', 'n_train', 'n_val', 'n_test')
# What must be the same in an iteration's metrics.json of every member (the split).
_SPLIT_RECORD = (
  ('normal_fold', 'fold'),
  ('abnormal_half', 'half'),
  ('n_train', 'training-set size'),
  ('n_val', 'validation-set size'),
  ('n_test', 'test-set size'),
  ('val_names', 'validation images'),
  ('val_labels', 'validation labels'),
  ('test_names', 'test images'),
  ('test_labels', 'test labels'),
)


@dataclasses.dataclass
class _Member:
  """A finished run read for fusion: its folder, label, config.json and metrics per iteration."""

  path: str
  label: str
  config: object
  record: dict
  metrics: dict

  def image_setting(self, field: str):
    """`data.<field>` of the run (its default where the config has none), lists for tuples."""
    value = (
      data.option(self.config.data, field) if field != 'image_size' else self.config.data[field]
    )
    return list(value) if isinstance(value, (tuple, list)) else value


def _dotted(record: dict, field: str, default=None):
  node = record
  for part in field.split('.'):
    if not isinstance(node, dict) or part not in node:
      return default
    node = node[part]
  return node


def _labels(paths: list[str]) -> list[str]:
  """Folder names; a repeated name gets its position ('cae', 'cae#2')."""
  names = [os.path.basename(os.path.normpath(p)) for p in paths]
  out = []
  for i, name in enumerate(names):
    out.append(f'{name}#{names[: i + 1].count(name)}' if names.count(name) > 1 else name)
  return out


def _read_members(runs) -> list[_Member]:
  paths = [os.path.abspath(r) for r in runs]
  members = []
  for path, label in zip(paths, _labels(paths), strict=True):
    config = inference.load_config(path)  # a run folder whose config passes the checks
    metrics = inference.finished_iterations(path)
    if not metrics:
      raise EnsembleError(f'{path}: no finished iteration (iter_XX/metrics.json) to fuse.')
    members.append(_Member(path, label, config, io.read_json(RunDir(path).config), metrics))
  return members


def _differs(a, b) -> str:
  if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    shown = ', '.join(f'{a[i]!r} vs {b[i]!r}' for i in diff[:3])
    return f'{len(diff)} of {len(a)} differ ({shown}{", ..." if len(diff) > 3 else ""})'
  return f'{a!r} vs {b!r}'


def check_members(members: list[_Member]) -> list[int]:
  """The iterations every member finished, after checking that the members share the data
  (fingerprint), the images a model sees, the split settings and, per iteration, the split.

  Raises:
    EnsembleError: naming the two runs (and the iteration) and what differs.
  """
  if len(members) < 2:
    raise EnsembleError('Fusion needs two runs or more (--run=A --run=B).')
  first = members[0]
  saved = first.record.get('data_fingerprint')
  for m in members:
    if not m.record.get('data_fingerprint'):
      raise EnsembleError(
        f'{m.path}: config.json records no data fingerprint (a run made before fingerprints '
        'existed): its data cannot be checked against the other runs.'
      )
  for m in members[1:]:
    diff = fingerprint_lib.differences(saved, m.record['data_fingerprint'])
    if diff:
      raise EnsembleError(f'{first.path} and {m.path} were run on other data: {diff}.')
    for field in _SPLIT_FIELDS:
      a, b = _dotted(first.record, field), _dotted(m.record, field)
      if a != b:
        raise EnsembleError(
          f'{first.path} and {m.path} differ in {field} ({a!r} vs {b!r}): other splits.'
        )
    for field in _IMAGE_FIELDS:
      a, b = first.image_setting(field), m.image_setting(field)
      if a != b:
        raise EnsembleError(
          f'{first.path} and {m.path} differ in data.{field} ({a!r} vs {b!r}): their models '
          'see other images (predict reads new images once, with one setting, for every member).'
        )
  common = sorted(set.intersection(*(set(m.metrics) for m in members)))
  if not common:
    finished = '; '.join(f'{m.path}: {sorted(m.metrics)}' for m in members)
    raise EnsembleError(f'The runs have no finished iteration in common ({finished}).')
  left = sorted(set().union(*(set(m.metrics) for m in members)) - set(common))
  if left:
    logging.warning('Iterations %s are not finished in every run: fused without them.', left)
  for i in common:
    ref = first.metrics[i]
    for m in members[1:]:
      rec = m.metrics[i]
      for field, what in _SPLIT_RECORD:
        if field not in ref or field not in rec:
          continue  # val_names: runs written before it existed (their split fields agree)
        if ref[field] != rec[field]:
          raise EnsembleError(
            f'{first.path} and {m.path} have other splits in iteration {i}: {what} '
            f'{_differs(ref[field], rec[field])}.'
          )
  return common


def candidates(n_members: int, step: float = 0.25) -> list[tuple[str, tuple]]:
  """[(name, weights)]: 'mean' (equal weights) first, then every weight vector with entries in
  {0, step, ..., 1} summing to 1 (those equal to the mean left out), in lexicographic order."""
  mean = tuple([1.0 / n_members] * n_members)
  out = [('mean', mean)]
  n = round(1.0 / step)
  if abs(n * step - 1.0) > 1e-9:
    raise ValueError(f'step={step}: expected 1/step to be a whole number (0.25, 0.1, 0.5).')
  for counts in itertools.product(range(n + 1), repeat=n_members):
    if sum(counts) != n:
      continue
    weights = tuple(c / n for c in counts)
    if np.allclose(weights, mean):
      continue
    out.append(('weights ' + '/'.join(f'{w:g}' for w in weights), weights))
  return out


def _fused(zs: list[np.ndarray], weights) -> np.ndarray:
  return np.sum([w * z for w, z in zip(weights, zs, strict=True)], axis=0)


def _auc(scores, labels) -> float:
  return float(metrics_lib.auc(scores, labels, xp=np))


def _check_workdir(workdir: str, paths: list[str]) -> None:
  """Refuses an OUT that is a member, or that holds a run other than a fusion of these runs."""
  out = os.path.abspath(workdir)
  if out in paths:
    raise EnsembleError(f'{workdir}: the output folder is one of the runs fused.')
  config = RunDir(workdir).config
  if os.path.exists(config):
    record = io.read_json(config)
    if not is_ensemble(record) or record['ensemble'].get('members') != paths:
      raise EnsembleError(
        f'{workdir}: this folder holds another run; use another --workdir (a fusion of the '
        'same runs, in the same order, is written over).'
      )


def _standardised(members: list[_Member], i: int) -> dict:
  """Iteration i: each member's (mean, std) of the validation normals, and its standardised
  validation, test and (where every member has the same one) test-only scores."""
  labels = members[0].metrics[i]['val_labels']
  stats = [standardisation(m.metrics[i]['val_scores'], labels) for m in members]

  def z(values):
    return [
      (np.asarray(v, np.float64) - mu) / sd for v, (mu, sd) in zip(values, stats, strict=True)
    ]

  out = {
    'stats': stats,
    'val': z([m.metrics[i]['val_scores'] for m in members]),
    'test': z([m.metrics[i]['test_scores'] for m in members]),
  }
  extras = [m.metrics[i].get('extra_test') for m in members]
  if all(extras) and all(e['names'] == extras[0]['names'] for e in extras):
    out['extra'] = z([e['scores'] for e in extras])
  return out


def choose_rule(z_val: dict, val_labels: dict, step: float = 0.25) -> tuple[dict, list[dict]]:
  """The candidate with the best mean validation AUC over the iterations (the first on a tie).

  Args:
    z_val: {iteration: [each member's standardised validation scores]}.
    val_labels: {iteration: the validation labels}.
    step: the grid step of `candidates`.

  Returns:
    (the chosen {'name', 'weights', 'val_auc'}, every candidate's such dict, in order).
  """
  n_members = len(next(iter(z_val.values())))
  tried = []
  for name, weights in candidates(n_members, step):
    aucs = [_auc(_fused(z_val[i], weights), val_labels[i]) for i in z_val]
    tried.append({'name': name, 'weights': list(weights), 'val_auc': float(np.mean(aucs))})
  return tried[int(np.argmax([t['val_auc'] for t in tried]))], tried


def _config_record(members, rule, tried, step, threshold, quantile) -> dict:
  """The fused run's config.json: the first member's data and protocol, the rule, the members."""
  base = members[0].record
  shares = ', '.join(
    f'{m.label}: {families.display_name(m.record.get("model_name"))} x {w:g}'
    for m, w in zip(members, rule['weights'], strict=True)
  )
  record = {k: v for k, v in base.items() if k not in ('model', 'task', 'gan', 'study_note')}
  # The largest of the members' image sizes: the size the fused maps are shown at.
  sizes = [int(m.record['data']['image_size']) for m in members]
  record['data'] = {**base['data'], 'image_size': max(sizes)}
  record.update(
    model_name=MODEL_NAME,
    model={},
    # The report's line on how the run was made, in place of a training schedule.
    description=(
      f'score fusion of {len(members)} runs ({shares}), each standardised on the validation '
      f'normals of each iteration; rule {rule["name"]} chosen by mean validation AUC among '
      f'{len(tried)} candidates; threshold by {threshold} on the fused validation scores.'
    ),
    study_row='',  # no study row beside a fusion
    cv={**base['cv'], 'threshold': threshold, 'threshold_quantile': quantile},
    ensemble={
      'members': [m.path for m in members],
      'labels': [m.label for m in members],
      'models': [m.record.get('model_name') for m in members],
      'image_sizes': sizes,
      'rule': rule['name'],
      'weights': rule['weights'],
      'step': step,
      'candidates': tried,
    },
  )
  return record


def _iteration_record(members, i, z, rule, threshold, quantile) -> dict:
  """The fused run's metrics.json of iteration i."""
  ref, weights = members[0].metrics[i], rule['weights']
  val, test = _fused(z['val'], weights), _fused(z['test'], weights)
  cut = metrics_lib.select_threshold(val, ref['val_labels'], threshold, quantile)
  fields = {
    **{k: ref[k] for k in _SPLIT_KEYS},
    'history': {'epoch': [], 'train_loss': []},
    'validation': {'epoch': [], 'auc': [], 'loss': []},
    'selection': f'fusion rule {rule["name"]} (mean validation AUC)',
    'selected_epoch': None,
    'selection_metric': _auc(val, ref['val_labels']),
    'threshold': {'method': threshold, 'value': cut},
    'val_scores': val.tolist(),
    'val_labels': ref['val_labels'],
    'test': metrics_lib.classification_metrics(test, ref['test_labels'], cut),
    'test_scores': test.tolist(),
    'test_labels': ref['test_labels'],
    'test_names': ref['test_names'],
    'ensemble': {
      'rule': rule['name'],
      'members': [
        {
          'run': m.path,
          'weight': w,
          'mean': mu,
          'std': sd,
          'val_auc': _auc(m.metrics[i]['val_scores'], ref['val_labels']),
          'test_auc': float(m.metrics[i]['test']['auc']),
        }
        for m, w, (mu, sd) in zip(members, weights, z['stats'], strict=True)
      ],
    },
    # Each member's share of the fused score (w z), drawn by the report beside the total.
    'test_score_parts': {
      m.label: (w * t).tolist() for m, w, t in zip(members, weights, z['test'], strict=True) if w
    },
  }
  if 'val_names' in ref:
    fields['val_names'] = ref['val_names']
  if 'extra' in z:
    # The test-only class against the test normals, with the same rule and threshold.
    normal = np.asarray(ref['test_labels']) == 0
    extra = _fused(z['extra'], weights)
    binary = np.r_[np.zeros(int(normal.sum()), int), np.ones(len(extra), int)]
    fields['extra_test'] = {
      'classes': ref['extra_test']['classes'],
      'metrics': metrics_lib.classification_metrics(
        np.concatenate([test[normal], extra]), binary, cut
      ),
      'scores': extra.tolist(),
      'names': ref['extra_test']['names'],
    }
  return records.IterationRecord(**fields).to_json()


def _result(members, rule: dict, tried: list, results: list, summary: dict, iterations) -> dict:
  """`fuse`'s result: the rule, the candidates, each member's and the fused run's mean AUCs."""

  def over_iterations(k, key):
    return [r['ensemble']['members'][k][key] for r in results]

  return {
    'rule': rule,
    'candidates': tried,
    'members': [
      {
        'run': m.path,
        'label': m.label,
        'model': m.record.get('model_name'),
        'weight': w,
        'val_auc': float(np.mean(over_iterations(k, 'val_auc'))),
        'test_auc': float(np.mean(over_iterations(k, 'test_auc'))),
        'test_auc_std': float(np.std(over_iterations(k, 'test_auc'))),
      }
      for k, (m, w) in enumerate(zip(members, rule['weights'], strict=True))
    ],
    'fused': {
      'val_auc': float(np.mean([r['selection_metric'] for r in results])),
      'test_auc': summary['metrics']['auc']['mean'],
      'test_auc_std': summary['metrics']['auc']['std'],
    },
    'iterations': iterations,
    'summary': summary,
  }


def fuse(
  runs, workdir: str, step: float = 0.25, threshold: str = 'f1', quantile: float = 0.95
) -> dict:
  """Fuses finished runs into the run folder `workdir` (see the module docstring).

  Args:
    runs: the members' run folders (two or more), on the same data and splits.
    workdir: the fused run's folder.
    step: the grid step of the weights.
    threshold: 'f1' (as a run's) or 'normal_quantile' on the fused validation scores.
    quantile: the quantile of 'normal_quantile'.

  Returns:
    {'rule': {'name', 'weights', 'val_auc'}, 'candidates': every candidate's such dict,
    'members': [{'run', 'label', 'model', 'weight', 'val_auc', 'test_auc', 'test_auc_std'}]
    (means over the iterations), 'fused': {'val_auc', 'test_auc', 'test_auc_std'},
    'iterations', 'summary': the run's summary.json, 'seconds'}.

  Raises:
    EnsembleError: the runs differ in data, images or splits, or share no finished iteration;
      `workdir` holds another run.
  """

  if threshold not in THRESHOLDS:
    raise ValueError(f'threshold={threshold!r}; expected one of {THRESHOLDS}.')
  start = time.perf_counter()
  members = _read_members(runs)
  _check_workdir(workdir, [m.path for m in members])
  iterations = check_members(members)
  z = {i: _standardised(members, i) for i in iterations}
  rule, tried = choose_rule(
    {i: z[i]['val'] for i in iterations},
    {i: members[0].metrics[i]['val_labels'] for i in iterations},
    step,
  )

  run = RunDir(workdir)
  os.makedirs(workdir, exist_ok=True)
  for i in run.iterations_with('metrics.json'):
    os.remove(run.metrics(i))  # a former fusion's: its iterations may not be fused now
  io.write_json(run.config, _config_record(members, rule, tried, step, threshold, quantile))
  results = []
  for i in iterations:
    results.append(_iteration_record(members, i, z[i], rule, threshold, quantile))
    io.write_json(run.metrics(i), results[-1])
  note = f'score fusion of {", ".join(m.label for m in members)}, rule {rule["name"]}'
  summary = evaluate.write_summary(inference.load_config(workdir), workdir, results, note=note)

  out = _result(members, rule, tried, results, summary, iterations)
  io.write_text(os.path.join(workdir, ENSEMBLE_MD), markdown(out))
  out['seconds'] = time.perf_counter() - start
  logging.info(
    'Fused %d runs over %d iterations in %.2f s: rule %s, mean validation AUC %.3f.',
    len(members),
    len(iterations),
    out['seconds'],
    rule['name'],
    out['fused']['val_auc'],
  )
  return out


def markdown(result: dict) -> str:
  """The members and the fused run: weight, mean validation AUC (what the rule is chosen by) and
  mean ± std test AUC over the iterations."""
  lines = [
    f'Rule: {result["rule"]["name"]} (chosen by mean validation AUC among '
    f'{len(result["candidates"])} candidates), {len(result["iterations"])} iterations.',
    '',
    '| run | model | weight | mean validation AUC | test AUC |',
    '| --- | --- | --- | --- | --- |',
  ]
  for m in result['members']:
    lines.append(
      f'| {m["label"]} | {families.display_name(m["model"])} | {m["weight"]:g} | '
      f'{m["val_auc"]:.3f} | {m["test_auc"]:.3f} ± {m["test_auc_std"]:.3f} |'
    )
  f = result['fused']
  lines.append(
    f'| **fused** | {result["rule"]["name"]} | | {f["val_auc"]:.3f} | '
    f'{f["test_auc"]:.3f} ± {f["test_auc_std"]:.3f} |'
  )
  return '\n'.join(lines) + '\n'
