"""The paediatric chest X-rays ("ZhangLab", Kermany et al. 2018) under their published split.

Each family's file takes the head-CT recipe of the same name (configs/headct/MODEL.py, with
its variants: `:cpu`, `:tiny`, ...) and changes only the data and the protocol: the class
folders of `../shared/data/chest_xray` (normal vs pneumonia), and the published train / test
split of its `split.csv` (`data.split_file`) under the hold-out scheme. The test split (234
normal, 390 pneumonia) is scored once; training and validation are drawn, seeded, from the
train split: 80 % of its 1,341 normals train, 20 % validate beside 10 % of its 3,875 pneumonia
images (the rest of those is never used by the unsupervised families, which fit the training
normals only).
"""

from __future__ import annotations

import ml_collections

CHEST_XRAY_ROOT = '../shared/data/chest_xray'


def chest_xray(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` (a head-CT family's) on the chest X-rays under their published split."""
  data = config.data
  data.source = 'class_folders'
  data.root = CHEST_XRAY_ROOT
  data.normal_classes = ('normal',)
  data.abnormal_classes = ('pneumonia',)
  data.split_file = 'split.csv'
  cv = config.cv
  cv.scheme = 'holdout'
  cv.normal_fractions = (0.8, 0.2, 0.0)
  cv.abnormal_fractions = (0.9, 0.1, 0.0)
  cv.iterations = ''
  return config
