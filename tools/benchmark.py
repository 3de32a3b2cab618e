"""End-to-end training throughput of the three training modes (experiments/benchmark.py and
tools/device_suite.py), on the public protocol API.

Modes, on the study's shapes (64x64, batch 30, 60 training images an iteration, validation of
70 images every 10 epochs):
  host_loop      augmentation on the host with albumentations, one jitted step per batch
                 (how the PyTorch study trains), one iteration;
  device_epochs  whole epochs and validations in one compiled call, one iteration;
  fold_parallel  the same, all 10 iterations at once under jax.vmap (sharded over devices).
Throughput counts training images (validation time included, as the protocol pays it).

`measure_step` times one family's train step alone (a fixed batch, no augmentation, no
validation), for the models whose protocol `measure` does not describe well (DenseNet121 at
224x224) and to compare families on one footing.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from uadjax import data
from uadjax import protocol as protocol_lib
from uadjax.families import make_task
from uadjax.protocol.group import Placement
from uadjax.run import compiler
from uadjax.train.loop import train_on_host
from uadjax.train.task import Batch

MODES = ('host_loop', 'device_epochs', 'fold_parallel')


def _block(tree):
  return jax.tree.map(
    lambda x: x.block_until_ready() if hasattr(x, 'block_until_ready') else x, tree
  )


def measure(
  config,
  mode: str,
  dtype: str,
  epochs: int,
  study_epochs: int = 5000,
  task_class: type | None = None,
) -> dict:
  """Times `epochs` epochs of one mode after compilation. Returns a row of the table.

  Args:
    config: a head-CT config (its data source is replaced by phantoms of the study's sizes).
    mode: one of MODES.
    dtype: 'float32' or 'bfloat16'.
    epochs: measured epochs (a multiple of config.cv.val_every).
    study_epochs: epochs of the projected full protocol.
    task_class: another task of the family's model (f-AnoGAN's GAN phase); default its own.
  """
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked (flags lock theirs)
  config.train.dtype = dtype
  config.data.source = 'phantoms'
  if 'phantoms' not in config.data:  # configs of other data sets (fundus) have none
    config.data.phantoms = ml_collections.ConfigDict(dict(seed=0))
  config.data.phantoms.n_normal = config.data.phantoms.n_abnormal = 100
  if config.get('task') and config.task.get('imagenet_norm'):
    # The phantoms are gray and ImageNet normalisation needs RGB: the classifier's first
    # convolution then reads one channel instead of three (a small part of its work).
    config.task.imagenet_norm = False
  config.augment.backend = 'albumentations' if mode == 'host_loop' else 'jax'
  protocol = protocol_lib.Protocol(config, task_class=task_class)
  engine = protocol.engine
  n_iter = len(protocol.splits) if mode == 'fold_parallel' else 1
  iterations = list(range(n_iter))
  validations = epochs // config.cv.val_every
  # The run's own placement (`uadjax.protocol.group.Placement`): stacked and sharded when
  # fold-parallel, as `protocol.run` trains.
  placement = Placement(n_iter, mode == 'fold_parallel')
  images = placement.replicate(protocol.dataset.images)
  carry = placement.put([protocol.initial_carry(i) for i in iterations])
  fold = placement.put([protocol.fold_data(i) for i in iterations])

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
        protocol.dataset.labels,
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


def measure_step(
  config, dtype: str, steps: int = 50, batch_size: int | None = None, task_class=None
) -> dict:
  """Times `steps` train steps of one family after compilation. Returns a row.

  The steps run under one `lax.scan` (as inside the device epochs) on a fixed random batch of
  the config's image shape, so the figure is the model's own cost on the device: no data
  movement, augmentation or validation (`measure` includes those). A supervised task (the
  classifier) gets alternating labels and unit weights (every family gets the same `Batch`).

  Args:
    config: any model config (its data is not read).
    dtype: 'float32' or 'bfloat16'.
    steps: measured steps (one compiled call; a first call warms up).
    batch_size: images per step; default `config.train.batch_size`.
    task_class: another task of the family's model (f-AnoGAN's GAN phase); default its own.
  """
  config = ml_collections.ConfigDict(config.to_dict())  # unlocked (flags lock theirs)
  config.train.dtype = dtype
  task = make_task(config, task_class=task_class)
  shape = data.image_shape(config.data)
  bs = int(batch_size or config.train.batch_size)
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(bs, *shape)), jnp.float32)
  labels = jnp.arange(bs, dtype=jnp.int32) % 2
  state = task.init(jax.random.PRNGKey(0), shape)
  keys = jax.random.split(jax.random.PRNGKey(1), steps)

  def run(state, keys, images, labels):
    def body(state, key):
      state, metrics = task.train_step(state, Batch.of(images, labels), key)
      return state, metrics['loss']

    return jax.lax.scan(body, state, keys)

  start = time.perf_counter()
  jitted = compiler.task_jit(run, task, compiler.TRAINING, donate_argnums=0)
  compiled = jitted.lower(state, keys, images, labels).compile()
  compile_s = time.perf_counter() - start
  state, _ = _block(compiled(state, keys, images, labels))  # warm-up
  start = time.perf_counter()
  state, losses = _block(compiled(state, keys, images, labels))
  wall = time.perf_counter() - start
  loss = float(np.asarray(losses)[-1])
  return {
    'model': config.model_name,
    'dtype': dtype,
    'batch': bs,
    'image': list(shape),
    'steps': steps,
    'params_m': round(sum(x.size for x in jax.tree.leaves(state.params)) / 1e6, 2),
    'train_images_per_s': round(steps * bs / wall, 1),
    'step_ms': round(wall / steps * 1e3, 3),
    'compile_s': round(compile_s, 2),
    'final_loss': loss,
    'finite': bool(np.isfinite(loss)),
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


def load_config(spec: str):
  """`path.py[:variants]` -> the config (as an entry point's `--config` would give it)."""
  import importlib.util

  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('bench_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
  """The device's float32 matrix-multiply rate in GFLOP/s (a jitted size x size product, the
  best of `repeats`): the ceiling a convolutional backbone's rate is set beside."""
  a = jax.device_put(np.random.default_rng(0).normal(size=(size, size)).astype(np.float32))
  product = jax.jit(lambda x: x @ x)
  _block(product(a))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    _block(product(a))
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best / 1e9


def measure_features(config, dtype: str = 'float32', batches: int = 5) -> dict:
  """Feature extraction of a fitted feature family (`FitTask.embed`: the frozen backbone's
  taps, resized, pooled or aggregated) on batches of `train.score_batch` images of the
  config's size, as the protocol runs it: images/s and the backbone's GFLOP/s (XLA's count of
  the compiled program's floating-point operations) beside `matmul_rate`.

  Args:
    config: a feature family's config (configs/headct/feature_gaussian.py, padim, patchcore).
    dtype: 'float32' or 'bfloat16'.
    batches: measured batches, after one that compiles.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.train.dtype = dtype
  task = make_task(config)
  frozen = task.frozen_variables()
  n = int(config.train.score_batch)
  size = int(config.data.image_size)
  images = jax.device_put(np.random.default_rng(0).uniform(size=(n, size, size, 1)))
  images = images.astype(jnp.float32)
  start = time.perf_counter()
  embed = jax.jit(task.embed).lower(frozen, images).compile()
  compile_s = time.perf_counter() - start
  _block(embed(frozen, images))
  start = time.perf_counter()
  for _ in range(batches):
    _block(embed(frozen, images))
  seconds = (time.perf_counter() - start) / batches
  cost = embed.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float((cost or {}).get('flops', float('nan')))
  return {
    'model': config.model_name,
    'backbone': f'{config.model.backbone} {"+".join(config.model.layers)}',
    'image_size': size,
    'dtype': dtype,
    'batch': n,
    'images_per_s': round(n / seconds, 1),
    'gflop_per_image': round(flops / n / 1e9, 2),
    'gflop_per_s': round(flops / seconds / 1e9, 1),
    'compile_s': round(compile_s, 2),
  }
