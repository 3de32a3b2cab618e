"""The patch kNN: each patch's cosine distance to a bank of the training normals' patches of a
frozen pretrained backbone (DINOv2 by default), fitted."""

from uadjax.families.patch_knn.task import PatchKNNTask
from uadjax.nn.features import PretrainedFeatures

__all__ = ['PatchKNNTask', 'PretrainedFeatures']
