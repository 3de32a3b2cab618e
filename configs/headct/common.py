"""Shared head-CT settings: data, augmentation, optimiser and the 2x5 protocol of the study.

Variants (the text after ':' in --config=configs/headct/MODEL.py:VARIANT):
  (none)  the study's values: 5000 epochs, validation every 10.
  quick   small enough for a 2-core CPU: 200 epochs, validation every 10.
  cpu     the CPU recipe (issue: the study's accuracy in at most 30 minutes on 2 cores): a
          shorter schedule with a higher, warmed-up and cosine-decayed learning rate; each
          model's file adds its score choice (chosen on validation AUC only, see docs/results.md).
  tiny    for tests: 4 epochs at 32x32 with a reduced network, 2 iterations.
  demo    `make demo`: the built-in phantoms, a short run of the full protocol on a CPU.
Variants combine with commas; 'phantoms' alone switches the data source (e.g. 'quick,phantoms').
"""

from __future__ import annotations

import ml_collections

from uadjax.data import augment

HEAD_CT_ROOT = '../shared/data/head_ct'
VARIANTS = ('quick', 'cpu', 'tiny', 'demo', 'phantoms')


def parse_variants(arg: str | None, known: tuple[str, ...] = VARIANTS) -> set[str]:
  """'quick,phantoms' -> {'quick', 'phantoms'}; names outside `known` raise a clear error."""
  names = {a.strip() for a in (arg or '').split(',') if a.strip()}
  unknown = names - set(known)
  if unknown:
    raise ValueError(f'Unknown config variant(s) {sorted(unknown)}; known: {known}.')
  return names


def augment_config() -> ml_collections.ConfigDict:
  """The study's training augmentation (torchvision values), run on the device by default:
  backend 'jax' (inside the compiled epoch) | 'albumentations' (the host loop)."""
  return augment.default_config()


def headct(arg: str | None = None) -> ml_collections.ConfigDict:
  """The head-CT protocol; the model file sets model_name and model."""
  variants = parse_variants(arg)
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict(
    dict(
      source='folder_csv',  # 'folder_csv' | 'class_folders' | 'phantoms'
      root=HEAD_CT_ROOT,
      labels_file='labels.csv',
      id_column='id',
      label_column='hemorrhage',
      normal_classes=('normal',),
      abnormal_classes=('abnormal',),
      image_size=64,
      phantoms=dict(n_normal=100, n_abnormal=100, seed=0),
    )
  )

  config.augment = augment_config()

  config.train = ml_collections.ConfigDict(
    dict(
      batch_size=30,
      epochs=5000,
      dtype='auto',  # 'auto' = bfloat16 on GPU/TPU, float32 on CPU | 'float32' | 'bfloat16'
      score_batch=35,
    )
  )
  config.optimizer = ml_collections.ConfigDict(
    dict(name='adam', learning_rate=2e-4, b1=0.5, b2=0.999)
  )

  config.cv = ml_collections.ConfigDict(
    dict(
      n_folds=5,
      n_halves=2,
      val_every=10,
      selection='val_auc',  # 'val_auc' (study) | 'val_loss' | 'last'
      threshold='f1',  # 'f1' (study) | 'normal_quantile'
      threshold_quantile=0.95,
      parallel=True,  # all iterations at once (vmap), sharded over the local devices
      iterations='',  # '' = all; e.g. '0,3' to run a subset
      epochs_per_call=100,  # epochs between progress lines (and checkpoint granularity)
      checkpoint_every=500,  # epochs between 'latest' checkpoints (also every 10 minutes)
      figures=True,
      tensorboard=True,  # WORKDIR/tensorboard: losses, validation AUC, images (README)
    )
  )

  # The CPU variants train iterations one after another: on a CPU, vmapping ten iterations'
  # convolutions loses cache locality and is ~10 % slower (experiments/benchmark.py); on a GPU
  # the fold-parallel default is the fast mode.
  if 'quick' in variants:
    config.cv.parallel = False
    config.train.epochs = 200
    config.cv.epochs_per_call = 20
    config.cv.checkpoint_every = 50
  if 'cpu' in variants:
    config.cv.parallel = False
    config.train.epochs = 600
    config.cv.epochs_per_call = 50
    config.cv.checkpoint_every = 100
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = 'cosine'
    config.optimizer.warmup_epochs = 20
  if 'demo' in variants:
    variants.add('phantoms')
    config.cv.parallel = False
    config.train.epochs = 60
    config.cv.val_every = 10
    config.cv.epochs_per_call = 20
    config.cv.checkpoint_every = 60
  if 'tiny' in variants:
    config.data.image_size = 32
    config.train.epochs = 4
    config.train.batch_size = 10
    config.train.score_batch = 16
    config.cv.val_every = 2
    config.cv.epochs_per_call = 2
    config.cv.checkpoint_every = 2
    config.cv.iterations = '0,1'
    config.cv.figures = False
  if 'phantoms' in variants:
    config.data.source = 'phantoms'
    if 'tiny' in variants:
      config.data.phantoms.n_normal = 20
      config.data.phantoms.n_abnormal = 10
  return config


# What a fitted family (no epochs, no optimiser: uadjax.train.task.FitTask) has no use for.
TRAINING_FIELDS = {
  'train': ('epochs', 'batch_size'),
  'cv': ('val_every', 'epochs_per_call', 'checkpoint_every', 'parallel'),
}


def fitted(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` without the fields of training (epochs, batches, optimiser, augmentation): a
  fitted family's config says only what it uses."""
  for group, fields in TRAINING_FIELDS.items():
    for field in fields:
      del config[group][field]
  del config['optimizer']
  del config['augment']
  return config


def features(
  arg,
  model_name: str,
  layers=('relu3_3', 'relu4_3'),
  image_size: int = 128,
  backbone: str = 'vgg16',
):
  """The config every feature family shares: the head-CT protocol without its training fields,
  `backbone`'s `layers` at `image_size` (`:tiny`: 32x32; 56x56 for a DINOv2 ViT, whose sides
  are multiples of its 14-pixel patches: 4x4 tokens, some inside the brain mask)."""
  config = fitted(headct(arg))
  if 'tiny' not in parse_variants(arg):
    config.data.image_size = image_size
  elif backbone.startswith('dinov2'):
    config.data.image_size = 56
  config.model_name = model_name
  config.model = dict(backbone=backbone, layers=tuple(layers))
  if backbone.startswith('dinov2'):
    config.model.weights = ''  # a DINOv2 checkpoint of yours; '' the installed ViT-S/14
  # Nothing is trained: bfloat16 ('auto' on a GPU) would only coarsen the features that the
  # statistics are fitted to, as on the CPU where the recipes were chosen.
  config.train.dtype = 'float32'
  return config
