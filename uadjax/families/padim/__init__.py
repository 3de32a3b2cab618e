"""PaDiM: a Gaussian per patch position of a frozen pretrained backbone's features, fitted."""

from uadjax.families.padim.task import PaDiMTask
from uadjax.nn.features import PretrainedFeatures

__all__ = ['PaDiMTask', 'PretrainedFeatures']
