"""uadjax: unsupervised anomaly detection in medical images with JAX and Flax."""

__version__ = '0.1.0'
