r"""The baseline that needs no training: the fraction of brain pixels in the hyperdense band.

  python -m experiments.cross_validate --config=configs/headct/intensity.py --workdir=runs/int
  the same on a CPU (it is one already):  --config=configs/headct/intensity.py:cpu
  for tests:  --config=configs/headct/intensity.py:tiny

The brain is the head mask (threshold, largest component, holes filled) eroded by the skull
margin; the band's lower edge is a percentile of the training normals' brain pixels, one
candidate an epoch, the best by validation AUC (uadjax/train/intensity.py). Does a deep model
beat a threshold? This row says.
"""

from configs.headct import common
from uadjax.train.intensity import PERCENTILES


def get_config(arg=None):
  """The intensity baseline's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.headct(arg)
  config.model_name = 'intensity'
  config.model = dict(bins=100, mask_threshold=0.1, brain_margin=3)
  config.task = dict(percentiles=PERCENTILES)
  # Intensities are the score: no augmentation (a flip would do no harm, nor any good).
  config.augment.hflip = 0.0
  config.augment.affine_p = 0.0
  config.augment.brightness = 0.0
  config.augment.contrast = 0.0
  config.train.epochs = len(PERCENTILES)  # one candidate band an epoch
  config.cv.val_every = 1
  config.cv.epochs_per_call = len(PERCENTILES)
  config.cv.checkpoint_every = len(PERCENTILES)
  config.cv.parallel = False  # nothing to gain from vmapping a histogram on a CPU
  return config
