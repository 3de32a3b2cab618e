"""Score variants on a finished run's selected checkpoints, without retraining.

`rescore(workdir, variants)` scores each iteration's validation and test images with the run's
'best' checkpoint under each variant of the `task` score switches (uadjax.nn.scores:
`residual`, `reduction`, `mask`, `topk`, `blur`; f-AnoGAN's `kappa` too) and returns their
AUCs. It is how a score is chosen on validation AUC (its test AUC is printed beside it, never
used to choose). The checkpoints were selected under the run's own score, so a variant's
figures here are those of the run's checkpoints, not of a run trained and selected under that
variant.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from uadjax import data, inference, protocol
from uadjax.evaluation import metrics as metrics_lib
from uadjax.nn import scores as scores_lib

# The fields a variant names in full: a variant starts from the study's score, not the run's.
SWITCHES = frozenset(f.name for f in dataclasses.fields(scores_lib.ScoreSwitches))


def rescore(workdir: str, variants: dict[str, dict]) -> dict[str, dict]:
  """{variant: {'val_auc': [...], 'test_auc': [...], 'iterations': [...]}} for each variant.

  Args:
    workdir: a finished run of a model that scores a reconstruction (CAE, SSAE, f-AnoGAN).
    variants: {name: task overrides}, e.g. {'study': {}, 'brain': {'mask': 'brain'}}. Each
      starts from the study's score switches (whatever the run was trained with) and the run's
      other task settings (f-AnoGAN's `kappa`), so {} is the study's score.
  """
  base = inference.load_config(workdir)
  dataset = data.load(base.data)
  splits = protocol.make_splits(base, dataset)
  labels = dataset.labels
  out = {}
  for name, overrides in variants.items():
    config = ml_collections.ConfigDict(base.to_dict())
    task = {k: v for k, v in config.get('task', {}).items() if k not in SWITCHES}
    task.update(overrides)
    config.task = task
    rows = {'iterations': [], 'val_auc': [], 'test_auc': []}
    for model in inference.load_models(workdir, config=config):
      split = splits[model.iteration]
      rows['iterations'].append(model.iteration)
      for side, idx in (('val_auc', split.val), ('test_auc', split.test)):
        scores, _ = model.score(dataset.images[idx])
        # A score that is not finite gives a NaN AUC (`metrics.auc`), said where it starts.
        if not np.all(np.isfinite(scores)):
          rows.setdefault('not_finite', []).append(f'iteration {model.iteration} {side[:-4]}')
        rows[side].append(float(metrics_lib.auc(scores, labels[idx], xp=np)))
    out[name] = rows
  return out


def markdown(results: dict[str, dict]) -> str:
  """The variants as a table: mean ± std of validation AUC (the choice) and test AUC."""
  lines = [
    '| variant | validation AUC | test AUC |',
    '| --- | --- | --- |',
  ]
  for name, r in results.items():
    v, t = np.asarray(r['val_auc']), np.asarray(r['test_auc'])
    lines.append(f'| {name} | {v.mean():.3f} ± {v.std():.3f} | {t.mean():.3f} ± {t.std():.3f} |')
  for name, r in results.items():
    if r.get('not_finite'):
      lines.append(f'\n{name}: scores not finite ({", ".join(r["not_finite"])}): its AUC is nan.')
  return '\n'.join(lines)
