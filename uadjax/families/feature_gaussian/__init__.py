"""The feature Gaussian: one Gaussian of a frozen pretrained backbone's pooled features, fitted."""

from uadjax.families.feature_gaussian.task import FeatureGaussianTask
from uadjax.nn.features import PretrainedFeatures

__all__ = ['FeatureGaussianTask', 'PretrainedFeatures']
