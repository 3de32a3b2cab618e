"""Training: the train state, the pure steps of each model family, and the epoch engine."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from uadjax.models import MODELS
from uadjax.train.classifier import ClassifierTask
from uadjax.train.dagmm import DAGMMTask
from uadjax.train.fanogan import EncoderTask, WGANTask
from uadjax.train.intensity import IntensityTask
from uadjax.train.reconstruction import ReconstructionTask, ScaleSpaceTask
from uadjax.train.state import TrainState, create_train_state, make_optimizer

# config.model_name -> the task class that trains and scores it.
TASKS = {
  'cae': ReconstructionTask,
  'ssae': ScaleSpaceTask,
  'dagmm': DAGMMTask,
  'densenet': ClassifierTask,
  'wgan': WGANTask,
  'fanogan': EncoderTask,
  'intensity': IntensityTask,
}

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str):
  """`train.dtype`: 'float32', 'bfloat16', or 'auto' (bfloat16 on GPU/TPU, float32 on CPU)."""
  if name == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  if name not in DTYPES:
    raise ValueError(f"train.dtype={name!r}; expected 'auto', 'float32' or 'bfloat16'.")
  return DTYPES[name]


def make_task(config, steps_per_epoch: int = 1):
  """The task (model + optimiser + step and score functions) that `config` describes.

  `steps_per_epoch` sets the length of a learning-rate schedule (`optimizer.schedule`); a
  restored model, which does not train, needs none.
  """
  name = config.model_name
  if name not in MODELS or name not in TASKS:
    raise ValueError(f'model_name={name!r}; known models: {sorted(MODELS)}.')
  model = MODELS[name](**config.model.to_dict(), dtype=compute_dtype(config.train.dtype))
  # config.task (optional): the loss's own settings (SSAE's lambdas, DAGMM's lambda_E, ...).
  task_kwargs = config.task.to_dict() if 'task' in config else {}
  tx = make_optimizer(config.optimizer, steps_per_epoch, config.train.epochs)
  task_class = TASKS[name]
  if 'steps_per_epoch' in {f.name for f in dataclasses.fields(task_class)}:
    # A task whose steps depend on the epoch (the intensity baseline) declares this field.
    task_kwargs['steps_per_epoch'] = steps_per_epoch
  return task_class(model=model, tx=tx, **task_kwargs)


__all__ = [
  'TASKS',
  'TrainState',
  'compute_dtype',
  'create_train_state',
  'make_optimizer',
  'make_task',
]
