r"""PaDiM on pretrained ImageNet features (VGG16), no training: a Gaussian per patch position.

  python -m experiments.cross_validate --config=configs/headct/padim.py:cpu --workdir=runs/padim
  for tests:  --config=configs/headct/padim.py:tiny

VGG16's relu2_2, relu3_3 and relu4_3 features at 128x128 are resized to a 16x16 grid; a seeded
subset of 100 channels is kept; a Gaussian (Ledoit-Wolf shrunk covariance) per grid cell is
fitted to the training normals; the image score is the largest cell's Mahalanobis distance
(uadjax/train/features.py).
"""

from configs.headct import common


def get_config(arg=None):
  """PaDiM's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.features(arg, 'padim', layers=('relu2_2', 'relu3_3', 'relu4_3'))
  config.task = dict(mask='none', grid=16, channels=100, channel_seed=0)
  return config
