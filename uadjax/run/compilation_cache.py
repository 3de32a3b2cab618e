"""JAX's persistent compilation cache, on by default in a per-user folder.

A run compiles the same programs every time it starts (the epoch engine's training call, the
scoring program, the initial state); the cache keeps the compiled executables on disk so that
a second run of the same config loads them instead of compiling (half a minute on a 2-core CPU
for the CAE). `setup()` is called by `uadjax.runtime.setup`, which every entry point calls first.

Attributes:
  ENV: the environment variable that chooses: unset (the default folder), a path, or 'off'.
  MIN_COMPILE_TIME_S: programs that compile faster than this are not written to the cache.
  cache_dir: the folder `setup` would use for an environment, or None when the cache is off.
  checks_dir: the folder beside it where the config check keeps the model checks that passed.
  data_dir: the folder beside it where `uadjax.data.load` keeps the preprocessed data sets.
  setup: points JAX at that folder (or leaves the cache off) and returns it.

The default folder is `$XDG_CACHE_HOME/uadjax/jax` (else `~/.cache/uadjax/jax`), with a
sub-folder per CPU model and instruction set, because XLA's CPU programs are compiled for the
host's instruction set and a home folder may be shared by different machines. Set
`JAX_COMPILATION_CACHE_DIR` (JAX's own variable) and that folder is used as given. The cache
is trusted code: its folder is created readable by its owner only.
"""

from __future__ import annotations

import hashlib
import os
import platform

from absl import logging

ENV = 'UADJAX_COMPILATION_CACHE'
# Every program, the one-operation ones of eager code too: on a CPU they compile in 20-600 ms
# each and are read back in a few, and JAX's default (1 s) leaves most of them out (measured:
# 3.4 s of compiling left in a warm CAE run with 0, 8.5 s with 0.1).
MIN_COMPILE_TIME_S = 0.0
_OFF = ('off', '0', 'false', 'no', 'none')


def _machine_tag() -> str:
  """A short name for this CPU model and instruction set (the CPU programs depend on it)."""
  description = platform.machine() + platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith(('model name', 'flags', 'Features')):
          description += line
          if line.startswith(('flags', 'Features')):
            break
  except OSError:
    pass  # not Linux: the architecture alone
  return f'{platform.machine() or "cpu"}-{hashlib.sha256(description.encode()).hexdigest()[:10]}'


def cache_dir(environ=None) -> str | None:
  """The cache folder for `environ` (default `os.environ`), or None when it is switched off.

  `UADJAX_COMPILATION_CACHE=off` switches it off; a path is used as given; unset, JAX's own
  `JAX_COMPILATION_CACHE_DIR` is kept if set, else the per-user default folder.
  """
  environ = os.environ if environ is None else environ
  value = environ.get(ENV, '').strip()
  if value:
    if value.lower() in _OFF:
      return None
    return os.path.abspath(os.path.expanduser(value))
  if environ.get('JAX_COMPILATION_CACHE_DIR'):
    return os.path.abspath(os.path.expanduser(environ['JAX_COMPILATION_CACHE_DIR']))
  home = environ.get('HOME') or os.path.expanduser('~')
  root = environ.get('XDG_CACHE_HOME') or os.path.join(home, '.cache')
  return os.path.join(root, 'uadjax', 'jax', _machine_tag())


def _beside(suffix: str, environ) -> str | None:
  """`cache_dir(environ)` + `suffix`: a folder beside the compilation cache and off with it."""
  path = cache_dir(environ)
  return None if path is None else path.rstrip(os.sep) + suffix


def checks_dir(environ=None) -> str | None:
  """Where `uadjax.config` keeps the model checks that passed (`cache_dir` + '-checks'), or
  None."""
  return _beside('-checks', environ)


def data_dir(environ=None) -> str | None:
  """Where `uadjax.data.load` keeps the preprocessed data sets (`uadjax.data.stored`;
  `cache_dir` + '-data'), or None."""
  return _beside('-data', environ)


def setup(environ=None) -> str | None:
  """Turns JAX's persistent compilation cache on in `cache_dir(environ)`; returns the folder.

  Call it before anything is compiled (JAX reads the setting at its first compilation). A
  folder that cannot be created leaves the cache off, with a warning: a run never fails for
  want of a cache.
  """
  import jax

  environ = os.environ if environ is None else environ
  path = cache_dir(environ)
  if path is None:
    jax.config.update('jax_enable_compilation_cache', False)
    logging.info('Compilation cache off (%s=%s).', ENV, environ.get(ENV))
    return None
  try:
    os.makedirs(path, mode=0o700, exist_ok=True)
  except OSError as e:
    logging.warning('Compilation cache off: cannot create %s (%s).', path, e)
    jax.config.update('jax_enable_compilation_cache', False)
    return None
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', path)
  if not environ.get('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'):
    jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_TIME_S)
  logging.info('Compilation cache: %s (%s=off to switch it off).', path, ENV)
  return path
