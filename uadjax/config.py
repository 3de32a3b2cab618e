"""A run's config, checked whole before anything is written, and again when a run is restored.

Attributes:
  ConfigError: a config that cannot run; the message names every bad field, its value and
    what is allowed.
  validate: the one validation pass over a run's config (fixed value sets, positive counts,
    `train.epochs` a positive multiple of `cv.val_every`, `cv.iterations` in range, and an
    image size the model's down- and up-sampling can take, checked by tracing the model with
    `jax.eval_shape`, which computes nothing).
  trains: whether the config's run trains (a fitted family's and a fused run's do not: their
    training fields are not checked).
  n_iterations: how many iterations the config's protocol has (10 for 2x5, 1 for a hold-out).
  selected_iterations: `cv.iterations` ('' = all, or '0,3,7') as a sorted list.
  RESUMABLE_CHANGES: fields that may differ between a run and its resumption.
  check_resume: refuses to continue a workdir whose saved config differs.

Optional fields read with a default here (configs of older runs lack them) are read the same
way everywhere else.
"""

from __future__ import annotations

import json
import numbers
import os
import sys

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from uadjax import data, families, io
from uadjax.data.dataset import OPTIONAL
from uadjax.data.preprocess import MODES
from uadjax.data.splits import SCHEMES
from uadjax.families import make_task
from uadjax.run import compilation_cache
from uadjax.run.layout import RunDir
from uadjax.train.loop import SELECTIONS

# Fields that may change between a run and its resumption: they change speed or output, not
# what is computed (fold-parallel and sequential runs agree to float tolerance).
RESUMABLE_CHANGES = (
  'cv.parallel',
  'cv.epochs_per_call',
  'cv.checkpoint_every',
  'cv.figures',
  'cv.tensorboard',
)

# Keys that config.json holds beside the config itself (written by the protocol, never set by
# a user): compared on their own, not as config fields.
RECORDED_KEYS = ('data_fingerprint',)

SOURCES = ('folder_csv', 'class_folders', 'phantoms')
THRESHOLDS = ('f1', 'normal_quantile', 'fixed')
BACKENDS = ('jax', 'albumentations')
OPTIMIZERS = ('adam', 'sgd', 'rmsprop')


class ConfigError(ValueError):
  """A config that cannot run: every bad field, its value and what is allowed."""


def _get(config, dotted: str, default=None):
  node = config
  for part in dotted.split('.'):
    if node is None or not hasattr(node, 'get'):
      return default
    node = node.get(part, None)
  return default if node is None else node


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class _Checker:
  """Collects every problem of one config, so the user fixes them in one go."""

  def __init__(self, config):
    self.config = config
    self.problems: list[str] = []

  def add(self, field: str, value, allowed: str) -> None:
    self.problems.append(f'{field}={value!r}: {allowed}')

  def one_of(self, field: str, allowed, default=None) -> None:
    value = _get(self.config, field, default)
    if value not in allowed:
      self.add(field, value, f'expected one of {tuple(allowed)}')

  def positive_int(self, field: str, default=None, required: bool = True) -> int | None:
    value = _get(self.config, field, default)
    if value is None and not required:
      return None
    if not _is_int(value) or value <= 0:
      self.add(field, value, 'must be a positive integer')
      return None
    return int(value)

  def probability(self, field: str, default=None) -> None:
    value = _get(self.config, field, default)
    if value is None:
      return
    if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
      self.add(field, value, 'must be a number in [0, 1]')

  def positive_number(self, field: str, default=None) -> None:
    value = _get(self.config, field, default)
    if value is None:
      return
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
      self.add(field, value, 'must be a positive number')

  def schedule(self, epochs_field: str, every_field: str) -> None:
    """`epochs_field` a positive multiple of `every_field`."""
    epochs = self.positive_int(epochs_field)
    every = self.positive_int(every_field)
    if epochs is not None and every is not None and epochs % every:
      self.add(epochs_field, epochs, f'must be a positive multiple of {every_field}={every}')


def n_iterations(config) -> int:
  """The number of iterations of the config's protocol (before `cv.iterations` picks some)."""
  if _get(config, 'cv.scheme', '2x5') == 'holdout':
    return 1
  return int(config.cv.n_folds) * int(config.cv.n_halves)


def selected_iterations(config, n: int | None = None) -> list[int]:
  """`cv.iterations` ('' = all, or '0,3,7') as a sorted list of iterations of the protocol."""
  n = n_iterations(config) if n is None else n
  text = str(_get(config, 'cv.iterations', '')).strip()
  if not text:
    return list(range(n))
  try:
    chosen = sorted({int(t) for t in text.split(',') if t.strip()})
  except ValueError as e:
    raise ConfigError(f'cv.iterations={text!r}: expected comma-separated integers.') from e
  bad = [i for i in chosen if not 0 <= i < n]
  if bad:
    raise ConfigError(f'cv.iterations={text!r}: iterations {bad} do not exist (0..{n - 1}).')
  return chosen


def trains(config) -> bool:
  """Whether the config's run trains: not a fitted family's (`FitTask`: no epochs, batches,
  optimiser or augmentation to check) nor a fused run's (`uadjax.ensemble`, whose training
  fields are its first member's). An unknown model name trains (the model check names it)."""

  if 'ensemble' in config:
    return False
  family = families.FAMILIES.get(_get(config, 'model_name'))
  return not (family and family.task.fit_only)


def _check_protocol(ck: _Checker, config) -> None:
  ck.one_of('train.dtype', ('auto', *families.DTYPES), 'auto')
  ck.positive_int('train.score_batch')
  # (The protocol's internal 'task' selection, f-AnoGAN's GAN phase, is never a user's.)
  ck.one_of('cv.selection', SELECTIONS)
  fitted = not trains(config)
  if not fitted:
    ck.positive_int('train.batch_size')
    ck.schedule('train.epochs', 'cv.val_every')
    ck.positive_int('cv.epochs_per_call')
    ck.positive_int('cv.checkpoint_every')
  ck.one_of('cv.threshold', THRESHOLDS)
  quantile = _get(config, 'cv.threshold_quantile', 0.95)
  if not isinstance(quantile, numbers.Real) or not 0.0 < quantile < 1.0:
    ck.add('cv.threshold_quantile', quantile, 'must be a number in (0, 1)')
  scheme = _get(config, 'cv.scheme', '2x5')
  ck.one_of('cv.scheme', SCHEMES, '2x5')
  if scheme == '2x5':
    # The study's iteration (g, b): 3 training folds, one validation and one test fold.
    if _get(config, 'cv.n_folds') != 5:
      ck.add('cv.n_folds', _get(config, 'cv.n_folds'), 'must be 5 (3 train + validation + test)')
    ck.positive_int('cv.n_halves')
    if _is_int(_get(config, 'cv.n_halves')) and config.cv.n_halves < 2:
      ck.add('cv.n_halves', config.cv.n_halves, 'must be at least 2 (validation and test)')
  elif scheme == 'holdout':
    for field in ('cv.normal_fractions', 'cv.abnormal_fractions'):
      value = _get(config, field, (0.6, 0.2, 0.2))
      ok = (
        len(tuple(value)) == 3
        and all(isinstance(v, numbers.Real) and v >= 0 for v in value)
        and sum(value) <= 1.0 + 1e-9
        and (value[0] > 0 or field == 'cv.abnormal_fractions')  # unsupervised: no abnormal
      )
      if not ok:
        ck.add(field, value, 'expected (train, validation, test) fractions >= 0, summing to <= 1')
  if not any('cv.n_' in p or 'cv.scheme' in p for p in ck.problems):
    try:
      selected_iterations(config)
    except ConfigError as e:
      ck.problems.append(str(e))
  ck.one_of('cv.tensorboard', (True, False), True)  # optional: older runs' configs lack it
  if fitted:
    return
  ck.one_of('augment.backend', BACKENDS, 'jax')
  for field in ('augment.hflip', 'augment.affine_p'):
    ck.probability(field)
  ck.one_of('optimizer.name', OPTIMIZERS)
  ck.positive_number('optimizer.learning_rate')


def _check_data(ck: _Checker, config) -> None:

  ck.one_of('data.source', SOURCES)
  size = ck.positive_int('data.image_size')
  if size is not None and size < 8:
    ck.add('data.image_size', size, 'must be at least 8')
  ck.one_of('data.preprocess', MODES, OPTIONAL['preprocess'])
  window = _get(config, 'data.dicom_window')
  if window is not None:
    w = tuple(window)
    if len(w) != 2 or not all(isinstance(v, numbers.Real) for v in w) or w[0] <= 0:
      ck.add('data.dicom_window', window, 'expected (width, level) in HU with width > 0')
  if _get(config, 'data.source') in ('folder_csv', 'class_folders') and not _get(
    config, 'data.root'
  ):
    ck.add('data.root', _get(config, 'data.root'), 'needs a folder (--config.data.root=PATH)')
  split_file = _get(config, 'data.split_file')
  if split_file:
    # The file itself is read and checked with the data (`splits.read_split_file`), before
    # anything is written; a finished run's readers do not need it.
    if _get(config, 'cv.scheme', '2x5') != 'holdout':
      ck.add('data.split_file', split_file, "a published split needs cv.scheme='holdout'")
    for field in ('cv.normal_fractions', 'cv.abnormal_fractions'):
      fractions = _get(config, field)
      if fractions is not None and len(tuple(fractions)) == 3 and float(tuple(fractions)[2]):
        ck.add(field, fractions, 'its test share must be 0 with data.split_file')


def _check_model_name(ck: _Checker, config) -> bool:
  """`config.model_name` names a family (`uadjax.families`); False (and the problem added) if
  not."""

  name = _get(config, 'model_name')
  if name not in families.FAMILIES:
    ck.add('model_name', name, f'expected one of {tuple(sorted(families.FAMILIES))}')
    return False
  return True


def _check_model(ck: _Checker, config) -> None:
  """The model builds from `config.model` / `config.task` and takes the configured images:
  `jax.eval_shape` traces its init and score on abstract arrays (nothing is computed)."""
  if not _check_model_name(ck, config):
    return
  name = config.model_name
  if ck.problems:  # the trace below needs sane sizes and dtypes
    return
  error = _model_error_unless_passed(config, int(config.data.image_size))
  if error is None:
    return
  if error.startswith('build:'):
    ck.problems.append(f'model / task of {name!r}: {error[6:]}')
    return
  size = int(config.data.image_size)
  near = _working_sizes_near(config, size)
  hint = f'; sizes that work near it: {", ".join(map(str, near))}' if near else ''
  ck.add(
    'data.image_size',
    size,
    f'the {name!r} model cannot take {size}x{size} images ({error}){hint}',
  )


def _model_error_unless_passed(config, size: int) -> str | None:
  """`model_error(config, size)`, skipped where the same check passed before with the same code.

  Passes (never errors) are kept as empty files named by `check_key` in
  `compilation_cache.checks_dir()`, beside the compilation cache and off with it: a second run
  of a config does not trace its model here (0.18 s of the CAE's warm start, measured). A
  stale pass could only move a model's error from this check to the run's own trace.
  """

  folder = compilation_cache.checks_dir()
  key = check_key(config, size) if folder else None  # None: a module cannot be read
  if key is not None and os.path.exists(os.path.join(folder, key)):
    return None
  error = model_error(config, size)
  if error is None and key is not None:
    try:
      os.makedirs(folder, mode=0o700, exist_ok=True)
      open(os.path.join(folder, key), 'w').close()
    except OSError:
      pass  # a check is never refused for want of a folder
  return error


def check_key(config, size: int) -> str | None:
  """`io.files_digest` of what `model_error(config, size)` depends on: the whole config, the
  size, the versions of JAX, Flax and Optax, and every module of uadjax and those that define
  the family's model and task (a family registered from outside uadjax); None when one cannot
  be read."""

  head = json.dumps(config.to_dict(), sort_keys=True, default=str)
  head += f'\n{size} {jax.__version__} {flax.__version__} {optax.__version__}'
  package = os.path.dirname(os.path.abspath(__file__))
  files = [path for path in io.files_under(package) if path.endswith('.py')]
  family = families.FAMILIES[config.model_name]
  for cls in (family.model, family.task, *(phase.task for phase in family.phases)):
    path = getattr(sys.modules.get(cls.__module__), '__file__', None)
    if path and not os.path.abspath(path).startswith(package + os.sep):
      files.append(path)
  return io.files_digest([(os.path.relpath(p, package), p) for p in files], head)


def model_error(config, size: int) -> str | None:
  """None if the model of `config` builds and scores (size, size) images; else why not
  ('build: ...' when it does not even build)."""

  c = ml_collections.ConfigDict(config.to_dict())
  c.data.image_size = size
  if 'image_size' in c.get('model', {}):
    c.model.image_size = size  # f-AnoGAN's networks grow with the data's size
  try:
    task = make_task(c)
  except Exception as e:  # any constructor error is the config's
    return f'build: {type(e).__name__}: {e}'
  shape = data.image_shape(c.data)

  try:
    frozen = task.frozen_variables()  # read here, not under the trace: they are concrete
  except Exception as e:  # a missing package or file of pretrained weights
    return f'build: {type(e).__name__}: {e}'

  def init_and_score(key):
    state = task.init(key, shape)
    return task.score({**state.variables, **frozen}, jnp.zeros((2, *shape), jnp.float32))

  try:
    scores, maps = jax.eval_shape(init_and_score, jax.random.PRNGKey(0))
  except Exception as e:  # shape errors come as TypeError, ValueError, ...
    return f'{type(e).__name__}: {str(e).splitlines()[0][:160]}'
  if scores.shape != (2,) or tuple(maps.shape[1:3]) != (size, size):
    return f'scores {scores.shape}, maps {maps.shape} for 2 images of {size}x{size}'
  return None


def _working_sizes_near(config, size: int) -> list[int]:
  """A few image sizes close to `size` that the model takes (the error path only)."""
  found = []
  for k in (5, 4, 3, 2):
    m = 2**k
    for candidate in (size // m * m, -(-size // m) * m):
      if candidate >= 8 and candidate not in found and model_error(config, candidate) is None:
        found.append(candidate)
    if len(found) >= 2:
      break
  return sorted(found)


def validate(config: ml_collections.ConfigDict, *, check_model: bool = True) -> None:
  """Checks the whole config of a run before anything is written; raises ConfigError naming
  every bad field, its value and what is allowed.

  Args:
    config: a protocol config (configs/headct/*.py, configs/fundus/*.py), or a run's saved one.
    check_model: also trace the model on the configured image size (a fraction of a second).
  """
  ck = _Checker(config)
  if not _is_int(_get(config, 'seed', 0)):
    ck.add('seed', _get(config, 'seed'), 'must be an integer')
  _check_data(ck, config)
  _check_protocol(ck, config)
  if check_model:
    _check_model(ck, config)
  else:
    # A restored run is not traced again (it trained), but a family it names must exist:
    # everything that reads the run builds its task from that name (a fused run's from its
    # members' configs, `uadjax.ensemble`).
    if 'ensemble' not in config:
      _check_model_name(ck, config)
  if 'gan' in config:
    # f-AnoGAN's first phase: its own schedule, optimiser and task.
    ck.schedule('gan.epochs', 'gan.select_every')
    ck.positive_int('gan.epochs_per_call')
    ck.positive_int('gan.checkpoint_every')
    ck.positive_int('gan.samples')
    ck.one_of('gan.optimizer.name', OPTIMIZERS)
    ck.positive_number('gan.optimizer.learning_rate')
  if ck.problems:
    raise ConfigError('Invalid config:\n  ' + '\n  '.join(ck.problems))


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def as_json(config: ml_collections.ConfigDict) -> dict:
  """The config as config.json stores it (tuples become lists)."""
  return json.loads(config.to_json_best_effort())


def check_resume(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to continue a workdir whose saved config differs from `config` (beyond the
  fields that only change speed or output: RESUMABLE_CHANGES)."""

  path = RunDir(workdir).config
  if not os.path.exists(path):
    return
  saved = {k: v for k, v in io.read_json(path).items() if k not in RECORDED_KEYS}
  saved = _flatten(saved)
  now = _flatten(as_json(config))
  changed = sorted(
    k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES
  )
  if changed:
    details = ', '.join(f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in changed[:8])
    raise ConfigError(
      f'{path}: this workdir holds a run with a different config ({details}). '
      'Use another --workdir, or the same config to resume.'
    )
