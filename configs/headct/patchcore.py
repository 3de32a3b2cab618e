r"""PatchCore on pretrained ImageNet features (VGG16), no training: a coreset memory bank.

  python -m experiments.cross_validate --config=configs/headct/patchcore.py:cpu \
      --workdir=runs/patchcore
  for tests:  --config=configs/headct/patchcore.py:tiny

VGG16's relu2_2 and relu3_3 features at 128x128, resized to one grid and averaged over 3x3
neighbourhoods, are the patches; a greedy k-center coreset of the training normals' patches is
the memory bank; a patch's score is its distance to the nearest bank patch, the image's the
mean of its `top` largest, `top` chosen on validation AUC (uadjax/train/features.py).
"""

from configs.headct import common


def get_config(arg=None):
  """PatchCore's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.features(arg, 'patchcore', layers=('relu2_2', 'relu3_3'))
  config.task = dict(mask='none', grid=32, memory=2000, neighbourhood=3, top=(1, 5, 20))
  if 'tiny' in common.parse_variants(arg):
    config.task.grid = 8
    config.task.memory = 50
  return config
