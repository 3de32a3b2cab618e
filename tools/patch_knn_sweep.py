r"""The patch kNN's recipe sweep: mean validation AUC of each setting over the protocol's
iterations, from features computed once per (image size, taps, neighbourhood, mask).

  python tools/patch_knn_sweep.py --data=../shared/data/head_ct --out=sweep.json \
      --sizes=224 --taps=block6 --taps=block9 --neighbourhoods=1,3 --masks=none,brain

Only validation AUCs are printed and saved: the recipe is chosen on them (test AUCs are the
protocol's to give, once, for the chosen recipe). Each row: the mean over the iterations of the
validation AUC of every `top` fraction, of the fraction the protocol would select per
iteration (the best validation AUC among `--select`), and the lowest iteration's.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time

import jax
import numpy as np
from absl import app, flags

from configs.headct import patch_knn as patch_knn_config
from uadjax import runtime
from uadjax.evaluation.metrics import auc
from uadjax.nn import statistics
from uadjax.protocol import fit as fit_lib
from uadjax.protocol.setup import Protocol

_DATA = flags.DEFINE_string('data', '../shared/data/head_ct', 'The head-CT folder.')
_OUT = flags.DEFINE_string('out', None, 'A JSON file of the rows (appended to if it exists).')
_SIZES = flags.DEFINE_list('sizes', ['224'], 'Image sizes (multiples of 14).')
_TAPS = flags.DEFINE_multi_string('taps', ['block6'], 'Taps, "+"-joined (repeatable).')
_NEIGHBOURHOODS = flags.DEFINE_list('neighbourhoods', ['1'], 'Neighbourhood sides.')
_MASKS = flags.DEFINE_list('masks', ['none'], "Masks: 'none', 'head', 'brain'.")
_TOPS = flags.DEFINE_list('tops', ['0.005', '0.01', '0.02', '0.05', '0.1'], 'Top fractions.')
_SELECT = flags.DEFINE_list('select', ['0.01', '0.02', '0.05'], 'The candidates selected among.')
_MEMORIES = flags.DEFINE_list('memories', ['0'], 'Bank sizes (0: every training patch).')
_REDUCE = flags.DEFINE_string('reduce', 'random', "'random' or 'coreset' (bank sizes > 0).")


def _rows_of(protocol, features, memories, tops, select) -> list[dict]:
  """Validation AUCs of each (memory, top) over the iterations."""
  dataset, task = protocol.dataset, protocol.task
  cells_fn = jax.jit(task.patch_distances)
  rows = []
  for memory in memories:
    per_top = {t: [] for t in tops}
    selected = []
    start = time.time()
    for i, split in enumerate(protocol.splits):
      normals = split.train[dataset.labels[split.train] == 0]
      train = jax.tree.map(lambda f: np.asarray(f[normals]), features)  # noqa: B023
      n_inside = int(np.sum(train['inside'] > 0))
      t = dataclasses.replace(task, memory=memory or n_inside, top=(tops[0],))
      (_, variables), *_ = t.fit(protocol.iteration_key(i), train)
      val = jax.tree.map(lambda f: f[split.val], features)  # noqa: B023
      cells = cells_fn(jax.device_put(variables), val)
      labels = dataset.labels[split.val]
      aucs = {}
      for top in tops:
        s = statistics.top_fraction_mean(cells, val['inside'], np.float32(top))
        aucs[top] = float(auc(np.asarray(s), labels, xp=np))
        per_top[top].append(aucs[top])
      selected.append(max(aucs[s] for s in select))  # the protocol's choice: the best of these
    rows.append(
      {
        'memory': memory,
        'val_auc': {str(t): float(np.mean(v)) for t, v in per_top.items()},
        'val_auc_min': {str(t): float(np.min(v)) for t, v in per_top.items()},
        'selected_val_auc': float(np.mean(selected)),
        'selected_val_auc_min': float(np.min(selected)),
        'seconds': time.time() - start,
      }
    )
  return rows


def main(argv):
  del argv
  runtime.setup()
  tops = [float(t) for t in _TOPS.value]
  select = [float(t) for t in _SELECT.value]
  memories = [int(m) for m in _MEMORIES.value]
  out = []
  for size, taps, k, mask in itertools.product(
    _SIZES.value, _TAPS.value, _NEIGHBOURHOODS.value, _MASKS.value
  ):
    config = patch_knn_config.get_config('cpu')
    config.data.root = _DATA.value
    config.data.image_size = int(size)
    config.model.layers = tuple(taps.split('+'))
    config.task.neighbourhood = int(k)
    config.task.mask = mask
    config.task.reduce = _REDUCE.value
    protocol = Protocol(config)
    start = time.time()
    features = jax.tree.map(np.asarray, fit_lib.embed_all(protocol))
    seconds = time.time() - start
    for row in _rows_of(protocol, features, memories, tops, select):
      row.update(size=int(size), taps=taps, neighbourhood=int(k), mask=mask, features_s=seconds)
      out.append(row)
      best = max(row['val_auc'], key=row['val_auc'].get)
      print(
        f'size {size} taps {taps} nbh {k} mask {mask} memory {row["memory"]}: selected '
        f'{row["selected_val_auc"]:.4f} (min {row["selected_val_auc_min"]:.3f}); by top '
        + ', '.join(f'{t} {a:.4f}' for t, a in row['val_auc'].items())
        + f'; best top {best}; features {seconds:.0f} s, kNN {row["seconds"]:.0f} s',
        flush=True,
      )
  if _OUT.value:
    try:
      with open(_OUT.value) as f:
        out = json.load(f) + out
    except FileNotFoundError:
      pass
    with open(_OUT.value, 'w') as f:
      json.dump(out, f, indent=1)


if __name__ == '__main__':
  app.run(main)
