"""PatchCore: a coreset memory bank of a frozen pretrained backbone's patch features, fitted."""

from uadjax.families.patchcore.task import PatchCoreTask
from uadjax.nn.features import PretrainedFeatures

__all__ = ['PatchCoreTask', 'PretrainedFeatures']
