"""End-to-end training throughput of the three training modes, for experiments/benchmark.py.

Modes, on the study's shapes (64x64, batch 30, 60 training images an iteration, validation of
70 images every 10 epochs):
  host_loop      augmentation on the host with albumentations, one jitted step per batch
                 (how the PyTorch study trains), one iteration;
  device_epochs  whole epochs and validations in one compiled call, one iteration;
  fold_parallel  the same, all 10 iterations at once under jax.vmap (sharded over devices).
Throughput counts training images (validation time included, as the protocol pays it).
"""

from __future__ import annotations

import copy
import time

import jax
import jax.numpy as jnp

from uadjax import cv
from uadjax.train.loop import train_on_host

MODES = ('host_loop', 'device_epochs', 'fold_parallel')


def _block(tree):
  return jax.tree.map(
    lambda x: x.block_until_ready() if hasattr(x, 'block_until_ready') else x, tree
  )


def _stack(trees):
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def measure(config, mode: str, dtype: str, epochs: int, study_epochs: int = 5000) -> dict:
  """Times `epochs` epochs of one mode after compilation. Returns a row of the table.

  Args:
    config: a head-CT config (its data source is replaced by phantoms of the study's sizes).
    mode: one of MODES.
    dtype: 'float32' or 'bfloat16'.
    epochs: measured epochs (a multiple of config.cv.val_every).
    study_epochs: epochs of the projected full protocol.
  """
  config = copy.deepcopy(config)
  config.train.dtype = dtype
  config.data.source = 'phantoms'
  config.data.phantoms.n_normal = config.data.phantoms.n_abnormal = 100
  config.augment.backend = 'albumentations' if mode == 'host_loop' else 'jax'
  protocol = cv.Protocol(config)
  engine = protocol.engine
  n_iter = len(protocol.splits) if mode == 'fold_parallel' else 1
  iterations = list(range(n_iter))
  images = jnp.asarray(protocol.dataset.images)
  validations = epochs // config.cv.val_every
  carries = [protocol.initial_carry(i) for i in iterations]
  folds = [protocol.fold_data(i) for i in iterations]
  if mode == 'fold_parallel':
    carry, fold = _stack(carries), _stack(folds)
  else:
    carry, fold = jax.tree.map(jnp.asarray, carries[0]), jax.tree.map(jnp.asarray, folds[0])

  if mode == 'host_loop':

    def run(carry):
      return train_on_host(
        engine,
        carry,
        fold,
        images,
        protocol.dataset.images,
        protocol.splits[0].train,
        protocol.host_augment,
        validations,
        (config.seed, 0),
      )

    start = time.perf_counter()
    carry, _ = _block(run(carry))  # compiles the step and the validation
    compile_s = time.perf_counter() - start
    # The first call also trained: subtract one steady call's time below.
    start = time.perf_counter()
    carry, _ = _block(run(carry))
    wall = time.perf_counter() - start
    compile_s = max(compile_s - wall, 0.0)
  else:
    fn = engine.compiled_train(validations, mode == 'fold_parallel')
    start = time.perf_counter()
    compiled = fn.lower(carry, fold, images).compile()
    compile_s = time.perf_counter() - start
    carry, _ = _block(compiled(carry, fold, images))  # warm-up
    start = time.perf_counter()
    carry, _ = _block(compiled(carry, fold, images))
    wall = time.perf_counter() - start

  train_images = epochs * engine.steps_per_epoch * engine.batch_size * n_iter
  rate = train_images / wall
  protocol_images = len(protocol.splits) * study_epochs * engine.steps_per_epoch * engine.batch_size
  return {
    'model': config.model_name,
    'mode': mode,
    'dtype': dtype,
    'iterations': n_iter,
    'epochs': epochs,
    'train_images_per_s': round(rate, 1),
    'compile_s': round(compile_s, 2),
    'projected_protocol_h': round(protocol_images / rate / 3600, 2),
  }


def environment() -> dict:
  """Device kind, backend and versions, recorded beside the figures."""
  import flax

  return {
    'jax': jax.__version__,
    'flax': flax.__version__,
    'backend': jax.default_backend(),
    'device_kind': jax.devices()[0].device_kind,
    'device_count': jax.device_count(),
  }


def format_rows(rows: list[dict]) -> str:
  """A plain-text table of `measure` rows."""
  header = (
    'model',
    'mode',
    'dtype',
    'iterations',
    'train_images_per_s',
    'compile_s',
    'projected_protocol_h',
  )
  widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in header]
  lines = ['  '.join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
  for r in rows:
    lines.append('  '.join(str(r[h]).ljust(w) for h, w in zip(header, widths, strict=True)))
  return '\n'.join(lines)
