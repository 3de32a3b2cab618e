"""The one registry of model families: `config.model_name` -> what trains, scores and reports it.

A family is its model (a Flax module built from `config.model`), its task (the pure train and
score functions built from `config.task`, `uadjax.train.task.Task`), the name the study and the
reports spell it with, the study's published row where there is one, and the phases that run
before its scored one (f-AnoGAN: the GAN, then the encoder that is scored). Everything that
dispatches on a model name reads it here: the config check, the protocol, restoring a run, the
reports.

Adding a family: write its model and its task, add a `Family` below, a config file and a test;
the protocol, the reports and predict need no edit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from uadjax.families import (
  cae,
  dagmm,
  densenet,
  fanogan,
  feature_gaussian,
  intensity,
  padim,
  patch_knn,
  patchcore,
  ssae,
)
from uadjax.families.fanogan import phase as fanogan_phase
from uadjax.train import loop
from uadjax.train.state import make_optimizer

# The study, Part 1, "Reported test results" (head CT, mean ± std over 10 iterations; no
# specificity reported), and Part 2 (the classifier on its private UWF fundus set, one split:
# no std).
HEAD_CT = 'head_ct'
UWF_FUNDUS = 'uwf_fundus'


@dataclasses.dataclass(frozen=True)
class StudyRow:
  """A row of the study's results table.

  Attributes:
    data: which of the study's data sets it is of (HEAD_CT is shown beside runs on the study's
      head-CT set by default; UWF_FUNDUS only where a config's `study_row` asks for it).
    metrics: {metric: (mean, std or None)}.
  """

  data: str
  metrics: dict


@dataclasses.dataclass(frozen=True)
class Phase:
  """A stage of a family's protocol trained before its scored one (f-AnoGAN's GAN): the driver
  (`uadjax.protocol.driver`) trains each in order, with the scored phase's engine, groups and
  resuming, in the phase's folder of the workdir (`RunDir.of_phase`); the scored phase then
  starts from what each hands over (the selected GAN, frozen under the encoder).

  Attributes:
    name: its folder in the workdir ('gan') and its name in logs.
    task: its task class (of the family's model).
    config: `config(run_config) -> phase_config`: the phase's protocol config (its schedule,
      optimiser and task settings at the top level), from the run's.
    selection: the engine's selection in this phase ('task': the task's own metric).
    record: the file of an iteration's folder that marks the phase done ('gan.json').
    finish: `finish(protocol, run_dir, iteration, carry, history) -> dict`: saves the selected
      variables and writes the record (last).
    hand_over: `hand_over(run_dir, iteration, state) -> state`: the scored phase's initial
      state, given this phase's finished folder (None: nothing handed over).
    on_checkpoint: `on_checkpoint(protocol, run_dir, iteration, carry)`, after each 'latest'
      checkpoint of an iteration (sample grids), or None.
  """

  name: str
  task: type
  config: Callable
  selection: str
  record: str
  finish: Callable
  hand_over: Callable | None = None
  on_checkpoint: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Family:
  """One model family.

  Attributes:
    name: its `config.model_name`.
    display: its name in tables and titles (the study's spelling).
    model: the Flax module class; `config.model` holds its keyword arguments.
    task: the task class; `config.task` holds its keyword arguments.
    study: the study's row, or None.
    phases: the phases trained before the scored one (`Phase`), in order.
  """

  name: str
  display: str
  model: type
  task: type
  study: StudyRow | None = None
  phases: tuple = ()


FAMILIES: dict[str, Family] = {
  f.name: f
  for f in (
    Family(
      'cae',
      'CAE',
      cae.CAE,
      cae.ReconstructionTask,
      StudyRow(
        HEAD_CT,
        {
          'auc': (0.78, 0.09),
          'accuracy': (0.74, 0.04),
          'recall': (0.93, 0.05),
          'precision': (0.77, 0.04),
          'f1': (0.84, 0.02),
        },
      ),
    ),
    Family(
      'ssae',
      'SSAE',
      ssae.SSAE,
      ssae.ScaleSpaceTask,
      StudyRow(
        HEAD_CT,
        {
          'auc': (0.81, 0.08),
          'accuracy': (0.80, 0.02),
          'recall': (0.88, 0.02),
          'precision': (0.84, 0.03),
          'f1': (0.86, 0.01),
        },
      ),
    ),
    Family(
      'fanogan',
      'f-AnoGAN',
      fanogan.FAnoGAN,
      fanogan.EncoderTask,
      StudyRow(
        HEAD_CT,
        {
          'auc': (0.87, 0.06),
          'accuracy': (0.86, 0.02),
          'recall': (0.93, 0.02),
          'precision': (0.88, 0.01),
          'f1': (0.91, 0.01),
        },
      ),
      phases=(
        Phase(
          'gan',
          fanogan.WGANTask,
          config=fanogan_phase.gan_config,
          # the sliced Wasserstein distance to the training images
          selection=loop.PHASE_SELECTION,
          record='gan.json',
          finish=fanogan_phase.finish,
          hand_over=fanogan_phase.hand_over,
          on_checkpoint=fanogan_phase.write_samples,
        ),
      ),
    ),
    # The study: "did not work on this dataset", no numbers.
    Family('dagmm', 'DAGMM', dagmm.DAGMM, dagmm.DAGMMTask),
    # The fundus study's supervised classifier (DenseNet121); its row is of another data set
    # than DRIMDB: a reference, not a target.
    Family(
      'densenet',
      'DenseNet121',
      densenet.DenseNet,
      densenet.ClassifierTask,
      StudyRow(
        UWF_FUNDUS,
        {
          'auc': (0.86, None),
          'accuracy': (0.75, None),
          'recall': (0.66, None),
          'precision': (0.63, None),
          'f1': (0.64, None),
          'specificity': (0.80, None),
        },
      ),
    ),
    # No training: the fraction of brain pixels in a band of intensities (a baseline).
    Family('intensity', 'Intensity band', intensity.IntensityHistogram, intensity.IntensityTask),
    # No training: statistics fitted to a frozen ImageNet backbone's features.
    Family(
      'feature_gaussian',
      'Feature Gaussian',
      feature_gaussian.PretrainedFeatures,
      feature_gaussian.FeatureGaussianTask,
    ),
    Family('padim', 'PaDiM', padim.PretrainedFeatures, padim.PaDiMTask),
    Family('patchcore', 'PatchCore', patchcore.PretrainedFeatures, patchcore.PatchCoreTask),
    Family('patch_knn', 'Patch kNN', patch_knn.PretrainedFeatures, patch_knn.PatchKNNTask),
  )
}


def get(name) -> Family:
  """The family of `config.model_name`; a ValueError naming the known ones otherwise."""
  if name not in FAMILIES:
    raise ValueError(f'model_name={name!r}; expected one of {tuple(sorted(FAMILIES))}.')
  return FAMILIES[name]


def display_name(name) -> str:
  """The study's spelling of a model name ('fanogan', 'f-AnoGAN', 'F_ANOGAN' -> 'f-AnoGAN');
  unknown names unchanged, 'this run' for none."""
  if not name:
    return 'this run'

  def key(text):
    return ''.join(c for c in str(text).lower() if c.isalnum())

  found = {key(n): f for n, f in FAMILIES.items()}.get(key(name))
  return found.display if found else str(name)


DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name: str):
  """`train.dtype`: 'float32', 'bfloat16', or 'auto' (bfloat16 on GPU/TPU, float32 on CPU)."""
  if name == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  if name not in DTYPES:
    raise ValueError(f"train.dtype={name!r}; expected 'auto', 'float32' or 'bfloat16'.")
  return DTYPES[name]


def make_task(config, steps_per_epoch: int = 1, task_class: type | None = None):
  """The task (model + optimiser + step and score functions) that `config` describes.

  Args:
    config: a run's (or a phase's) config: `model_name`, `model`, `task`, `optimizer`, `train`.
    steps_per_epoch: the length of a learning-rate schedule's epoch (`optimizer.schedule`); a
      restored model, and a fitted one, need none.
    task_class: another task of the family's model (a phase's: f-AnoGAN's GAN); default the
      family's own.
  """
  family = get(config.model_name)
  task_class = task_class or family.task
  model = family.model(**config.model.to_dict(), dtype=compute_dtype(config.train.dtype))
  task_kwargs = config.task.to_dict() if 'task' in config else {}
  if task_class.fit_only:
    tx = optax.identity()  # fitted, not trained: a config has no optimizer or epochs
  else:
    tx = make_optimizer(config.optimizer, steps_per_epoch, config.train.epochs)
  return task_class(model=model, tx=tx, **task_kwargs)
