r"""The baseline that needs no training: the fraction of brain pixels in the hyperdense band.

  python -m experiments.cross_validate --config=configs/headct/intensity.py --workdir=runs/int
  the same on a CPU (it is one already):  --config=configs/headct/intensity.py:cpu
  for tests:  --config=configs/headct/intensity.py:tiny

The brain is the head mask (threshold, largest component, holes filled) eroded by the skull
margin; the band's lower edge is a percentile of the training normals' brain pixels, one
candidate band per percentile, the best by validation AUC (uadjax/families/intensity/task.py:
a fitted family, no epochs). Does a deep model beat a threshold? This row says.
"""

from configs.headct import common
from uadjax.families.intensity.task import PERCENTILES


def get_config(arg=None):
  """The intensity baseline's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.fitted(common.headct(arg))
  config.model_name = 'intensity'
  config.model = dict(bins=100, mask_threshold=0.1, brain_margin=3)
  config.task = dict(percentiles=PERCENTILES)
  return config
