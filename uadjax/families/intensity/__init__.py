"""The intensity baseline: the fraction of brain pixels in a band of intensities, fitted."""

from uadjax.families.intensity.model import IntensityHistogram
from uadjax.families.intensity.task import IntensityTask

__all__ = ['IntensityHistogram', 'IntensityTask']
