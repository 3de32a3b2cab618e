"""Data: readers, preprocessing, synthetic phantoms, splits and augmentation."""

from uadjax.data.dataset import Dataset, load
from uadjax.data.readers import DataError

__all__ = ['DataError', 'Dataset', 'load']
