"""Shared fundus-quality settings (the study's part 2): data, augmentation and the hold-out split.

The study's UWF set is private; DRIMDB (`../shared/data/drimdb`: Good/, Bad/, Outlier/) stands
in. For your own UWF folders: --config.data.root=PATH --config.data.abnormal_classes="('Poor',)"
--config.data.extra_test_classes="()". Large JPEGs are decoded at reduced scale.

Variants (after ':' in --config=configs/fundus/MODEL.py:VARIANT):
  (none)  the study's values.
  quick   small enough for a 2-core CPU.
  tiny    for tests (tiny images and networks, a few epochs; point data.root at a small folder).
"""

from __future__ import annotations

import ml_collections

from configs.headct import common as headct_common
from uadjax.data import augment

DRIMDB_ROOT = '../shared/data/drimdb'
VARIANTS = ('quick', 'tiny')


def parse_variants(arg: str | None) -> set[str]:
  """'quick' -> {'quick'}; unknown names raise a clear error."""
  return headct_common.parse_variants(arg, VARIANTS)


def fundus(arg: str | None = None) -> ml_collections.ConfigDict:
  """The fundus protocol; the model file sets model_name, model, task, optimizer and sizes."""
  variants = parse_variants(arg)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.data = ml_collections.ConfigDict(
    dict(
      source='class_folders',
      root=DRIMDB_ROOT,
      normal_classes=('Good',),
      abnormal_classes=('Bad',),
      extra_test_classes=('Outlier',),  # tested against the test normals, never trained on
      image_size=224,
      preprocess='rgb',  # 'rgb' (classifier) | 'rg_percentile' (f-AnoGAN) | 'gray'
    )
  )
  # The study's fundus augmentation: horizontal flip p 0.5; affine rotation ±3°, translation
  # ±5 %, scale 0.95-1.05; no shear, no colour jitter, no min-max afterwards.
  config.augment = augment.default_config()
  config.augment.update(
    dict(
      hflip=0.5,
      affine_p=1.0,
      rotate=3.0,
      translate=0.05,
      scale=(0.95, 1.05),
      shear=0.0,
      brightness=0.0,
      contrast=0.0,
      rescale=False,
    )
  )
  config.train = ml_collections.ConfigDict(
    dict(batch_size=64, epochs=500, dtype='auto', score_batch=32)
  )
  config.cv = ml_collections.ConfigDict(
    dict(
      scheme='holdout',
      normal_fractions=(0.6, 0.2, 0.2),
      abnormal_fractions=(0.6, 0.2, 0.2),
      val_every=1,
      selection='val_loss',
      threshold='fixed',
      threshold_quantile=0.95,
      threshold_value=0.5,
      parallel=False,  # one split: nothing to run in parallel
      iterations='',
      epochs_per_call=10,
      checkpoint_every=50,
      figures=True,
      tensorboard=True,  # WORKDIR/tensorboard: losses, validation AUC, images (README)
    )
  )
  # The study's part-2 numbers are of its private UWF set: shown as a reference only.
  config.study_row = ''
  config.study_note = 'DRIMDB stand-in for the private UWF set'
  if 'tiny' in variants:
    config.data.image_size = 32
    config.train.batch_size = 8
    config.train.score_batch = 8
    config.train.epochs = 2
    config.cv.epochs_per_call = 1
    config.cv.checkpoint_every = 1
    config.cv.figures = False
  return config
