r"""The head CT's padim recipe on the chest X-rays under their published split.

  python -m experiments.cross_validate --config=configs/chest_xray/padim.py:cpu \
      --workdir=RUN

The model, task, schedule and image size are configs/headct/padim.py's (with
its variants); the data and the protocol are configs/chest_xray/common.py's.
"""

from configs.chest_xray import common
from configs.headct import padim as headct


def get_config(arg=None):
  """The chest X-ray config of the padim family; `arg`: the head-CT file's variants."""
  return common.chest_xray(headct.get_config(arg))
