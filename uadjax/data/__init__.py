"""Data: readers, preprocessing, synthetic phantoms, splits and augmentation."""

from uadjax.data.dataset import Dataset, image_shape, load, option
from uadjax.data.readers import DataError

__all__ = ['DataError', 'Dataset', 'image_shape', 'load', 'option']
