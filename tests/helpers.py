"""What the tests share besides fixtures: where the repository and the real data are, configs
with overrides, the cross-validation entry point in a subprocess, and its progress log."""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'
HEAD_CT = SHARED_DATA / 'head_ct'

requires_head_ct = pytest.mark.skipif(
  not (HEAD_CT / 'labels.csv').exists(),
  reason=f'the real head CT set is not at {HEAD_CT} (a fresh clone has no ../shared/data)',
)

TINY_CAE = 'configs/headct/cae.py:tiny,phantoms'


def make_config(spec: str, **overrides):
  """The config `spec` names as the entry point's --config does (the file, then its variants:
  'configs/headct/cae.py:tiny,phantoms'), with `overrides` as 'a.b' keys."""
  path, _, variants = spec.partition(':')
  module = importlib.import_module(path.removesuffix('.py').replace('/', '.'))
  config = module.get_config(variants or None)
  for key, value in overrides.items():
    node = config
    *parents, last = key.split('.')
    for part in parents:
      node = node[part]
    node[last] = value
  return config


def shared_dir(tmp_path_factory, name: str, build) -> pathlib.Path:
  """A folder that `build(folder)` fills once per test session, shared by every xdist worker.

  Under pytest-xdist each worker is its own process with its own session fixtures; without this
  each would train the same tiny run (or compile the same programs) once. The first worker to
  ask builds the folder under a file lock in the session's common temporary folder; the others
  wait for the lock and reuse it. Run serially, it is an ordinary per-session folder. A build
  that fails leaves no '.done' marker, so the next worker to ask builds it again (and fails
  again, with its own traceback).
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # the workers' basetemps are popen-gwN folders of one session folder
  folder, done = root / name, root / f'{name}.done'
  with open(root / f'{name}.lock', 'w') as lock, _locked(lock):
    if not done.exists():
      if folder.exists():
        shutil.rmtree(folder)  # a failed build's leftovers
      folder.mkdir()
      build(folder)
      done.touch()
  return folder


@contextlib.contextmanager
def _locked(file):
  fcntl.flock(file, fcntl.LOCK_EX)
  try:
    yield
  finally:
    fcntl.flock(file, fcntl.LOCK_UN)


def env_without_gpu() -> dict:
  """The environment for subprocesses: CPU only, repository on the path."""
  env = dict(os.environ)
  env['JAX_PLATFORMS'] = 'cpu'
  env['PYTHONPATH'] = str(REPO)
  return env


def run(cmd: list[str], *, expect: int | None = 0, input: str | None = None, timeout: int = 300):
  """`cmd` in a subprocess from the repository (CPU only, the repository on the path); asserts
  its exit status is `expect` (None: any) and returns the CompletedProcess (text output)."""
  done = subprocess.run(
    cmd,
    input=input,
    cwd=REPO,
    env=env_without_gpu(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  if expect is not None:
    assert done.returncode == expect, done.stderr[-3000:]
  return done


def python(*args, **kwargs) -> subprocess.CompletedProcess:
  """`python ARGS` through `run` (keyword arguments: `run`'s)."""
  return run([sys.executable, *args], **kwargs)


def last_json(done: subprocess.CompletedProcess):
  """The JSON value a subprocess printed on its last line."""
  return json.loads(done.stdout.strip().splitlines()[-1])


def phantom_pngs(folder, n_normal: int = 1, n_abnormal: int = 1, size: int = 32):
  """`folder` holding `n_normal + n_abnormal` phantoms as 8-bit PNGs (0.png, 1.png, ...): new
  images for predict."""
  from uadjax.data import phantoms

  folder.mkdir(parents=True, exist_ok=True)
  images, _, _, _ = phantoms.make_phantoms(n_normal, n_abnormal, size, 5)
  for k, x in enumerate(images):
    Image.fromarray((x[..., 0] * 255).astype(np.uint8)).save(folder / f'{k}.png')
  return folder


def cross_validate_cmd(workdir, *flags, config: str = TINY_CAE) -> list[str]:
  """The command line of `python -m experiments.cross_validate`."""
  cmd = [sys.executable, '-m', 'experiments.cross_validate', f'--config={config}']
  return [*cmd, f'--workdir={workdir}', *flags]


def cross_validate(workdir, *flags, config: str = TINY_CAE, env=None, timeout=600):
  """`python -m experiments.cross_validate` in a subprocess (CPU only unless `env` says
  otherwise); asserts it succeeded and returns the CompletedProcess."""
  done = subprocess.run(
    cross_validate_cmd(workdir, *flags, config=config),
    cwd=REPO,
    env=env or env_without_gpu(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done


def epochs_logged(workdir) -> int:
  """The last epoch a running protocol wrote to WORKDIR/progress.csv (0 before its first)."""
  path = workdir / 'progress.csv'
  if not path.exists():
    return 0
  rows = path.read_text().strip().splitlines()[1:]
  return max((int(r.split(',')[2]) for r in rows), default=0)


def multiframe_dicom(path, frames=3):
  """pydicom's bundled CT_small repeated `frames` times, each frame 100 HU brighter: one
  multi-frame file at `path`."""
  ds = pydicom.dcmread(get_testdata_file('CT_small.dcm', download=False))
  pixels = ds.pixel_array
  stack = np.stack([pixels + 100 * k for k in range(frames)]).astype(pixels.dtype)
  ds.NumberOfFrames = frames
  ds.PixelData = stack.tobytes()
  ds.save_as(path)
  return path


def fundus_like(root, n_good=20, n_bad=10, n_outlier=4):
  """Class folders like a fundus set's. Good: a bright disc; bad: dim and washed out; outlier:
  noise. JPEGs with spaces in their names."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:90, :120]
  disc = ((yy - 45) ** 2 + (xx - 60) ** 2 < 38**2).astype(float)
  for cls, n in (('Good', n_good), ('Bad', n_bad), ('Outlier', n_outlier)):
    (root / cls).mkdir(parents=True)
    for i in range(n):
      img = np.stack([disc * 200, disc * 90, disc * 5], -1) + rng.normal(0, 10, (90, 120, 3))
      if cls == 'Bad':
        img = img * 0.3 + 90
      if cls == 'Outlier':
        img = rng.uniform(0, 255, (90, 120, 3))
      Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / cls / f'{cls} ({i}).jpg')
  return root


def torch_cae_parameter_count(channels=(32, 64, 128, 256, 512)):
  """The study's PyTorch CAE, counted by hand: conv weights + biases, BatchNorm weight + bias."""
  conv = lambda cin, cout: 9 * cin * cout + cout
  c = (1, *channels)
  encoder = sum(conv(c[i], c[i + 1]) for i in range(len(channels)))
  encoder += sum(2 * f for f in channels[1:])  # no BatchNorm on the first block
  decoder = sum(conv(channels[i], channels[i - 1]) for i in range(len(channels) - 1, 0, -1))
  decoder += sum(2 * channels[i - 1] for i in range(len(channels) - 1, 1, -1))
  return encoder + decoder + conv(channels[0], 1)


def read_events(folder):
  """Every event of one TensorBoard run (images too: the default keeps only a few)."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  events = EventAccumulator(str(folder), size_guidance={'scalars': 0, 'images': 0})
  events.Reload()
  return events


def scalars(events, tag: str) -> tuple[list[int], list[float]]:
  """The steps and values of one scalar tag of `read_events`' events."""
  found = events.Scalars(tag)
  return [e.step for e in found], [e.value for e in found]
