r"""The study's CAE trained in PyTorch, timed the way uadjax's modes are (tools/device_suite.py).

  python tools/torch_cae_bench.py --peer=.device/torch_cae.py --images=.device/head_ct

Needs torch and pillow only (never uadjax or JAX): it runs under whichever python has torch.
The network, the Dataset (decode, resize, augment, min-max on the host) and the augmentation
are the peer's own (../shared/peer/torch_cae.py, imported from --peer). Ways, in the order
they run, each one JSON line (training images/s over the timed epochs, validation of 70 images
every 10 epochs included, as in `tools/benchmark.py`):

  fast_eager     the fastest honest way: the 130 images decoded once and kept on the GPU, the
                 same augmentation batched on the GPU (flip, affine through affine_grid and
                 grid_sample, brightness/contrast, min-max), bf16 autocast, batched validation;
  study_loop     the peer's DataLoader loop as the study ran it, float32, with the model and
                 each batch on the GPU (the peer itself never leaves the CPU);
  fast_compiled  the same under torch.compile (on failure: the error, and eager is what counts);
  peer_as_is     the peer script unmodified, as a subprocess (on the CPU, as it is written).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

N_TRAIN, N_VAL, BATCH, SIZE = 60, 70, 30, 64
VAL_EVERY, SMOKE_VAL_EVERY = 10, 1  # the study's; in --smoke each (single) timed epoch validates


def load_peer(path: str):
  """The peer module (its CAE, Images dataset and augmentation)."""
  spec = importlib.util.spec_from_file_location('torch_cae_peer', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def image_paths(folder: str) -> list[str]:
  """The peer's file order: sorted PNGs then JPEGs; the first 60 train, the next 70 validate."""
  names = sorted(n for n in os.listdir(folder) if n.lower().endswith('.png'))
  names += sorted(n for n in os.listdir(folder) if n.lower().endswith('.jpg'))
  return [os.path.join(folder, n) for n in names]


def _sync(device) -> None:
  if device.type == 'cuda':
    torch.cuda.synchronize()


def study_loop(peer, paths, device, epochs: int, warmup: int, val_every: int) -> dict:
  """The peer's loop (DataLoader over its Images dataset, one-image validation), on `device`."""
  from torch.utils.data import DataLoader

  torch.manual_seed(0)
  train = DataLoader(
    peer.Images(paths[:N_TRAIN], SIZE, True), batch_size=BATCH, shuffle=True, drop_last=True
  )
  val = DataLoader(peer.Images(paths[N_TRAIN : N_TRAIN + N_VAL], SIZE, False), batch_size=1)
  model = peer.CAE().to(device)
  opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
  mse = torch.nn.MSELoss()

  def run(n_epochs: int) -> tuple[float, int]:
    steps, start = 0, time.perf_counter()
    for epoch in range(1, n_epochs + 1):
      model.train()
      for x, _ in train:
        x = x.to(device, non_blocking=True)
        opt.zero_grad()
        loss = mse(model(x), x)
        loss.backward()
        opt.step()
        steps += 1
      if epoch % val_every == 0:
        model.eval()
        with torch.no_grad():
          [mse(model(x.to(device)), x.to(device)).item() for x, _ in val]
    _sync(device)
    return time.perf_counter() - start, steps

  run(warmup)
  wall, steps = run(epochs)
  return {'dtype': 'float32', 'compiled': False, 'wall_s': wall, 'steps': steps}


def preload(paths, device) -> torch.Tensor:
  """Images decoded once as the peer's dataset does (gray, bilinear 64x64), (n, 1, 64, 64)."""
  arrays = []
  for p in paths:
    with Image.open(p) as im:
      arrays.append(np.asarray(im.convert('L').resize((SIZE, SIZE), Image.BILINEAR), np.float32))
  return torch.from_numpy(np.stack(arrays)[:, None] / 255.0).to(device)


def minmax(x: torch.Tensor) -> torch.Tensor:
  """Per-image min-max to [0, 1] (a constant image becomes zeros)."""
  lo = x.amin(dim=(1, 2, 3), keepdim=True)
  span = x.amax(dim=(1, 2, 3), keepdim=True) - lo
  return torch.where(span > 1e-8, (x - lo) / span.clamp_min(1e-8), torch.zeros_like(x))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
  """The peer's augmentation on a batch on its device: flip p 0.5, rotation ±15°, scale
  0.98-1.02, shear ±5° on x and y, translation ±1 %, brightness and contrast 0.95-1.05."""
  n, dev = x.shape[0], x.device

  def uniform(lo, hi):
    return torch.rand(n, device=dev, generator=gen) * (hi - lo) + lo

  flip = torch.rand(n, device=dev, generator=gen) < 0.5
  x = torch.where(flip[:, None, None, None], x.flip(-1), x)
  angle = uniform(-15, 15) * math.pi / 180
  s = uniform(0.98, 1.02)
  shx, shy = (uniform(-5, 5) * math.pi / 180 for _ in range(2))
  tx, ty = uniform(-0.02, 0.02), uniform(-0.02, 0.02)  # ±1 % of the size, in [-1, 1] units
  a = s * torch.cos(angle) - torch.tan(shy) * s * torch.sin(angle)
  b = s * torch.sin(angle) + torch.tan(shx)
  c, d = -s * torch.sin(angle), s * torch.cos(angle)
  theta = torch.stack([torch.stack([a, b, tx], 1), torch.stack([c, d, ty], 1)], 1)
  grid = F.affine_grid(theta, list(x.shape), align_corners=False)
  x = F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
  x = x * uniform(0.95, 1.05)[:, None, None, None]
  mean = x.mean(dim=(1, 2, 3), keepdim=True)
  x = (x - mean) * uniform(0.95, 1.05)[:, None, None, None] + mean
  return minmax(x)


def fast(
  peer, paths, device, epochs: int, warmup: int, val_every: int, compile_model: bool
) -> dict:
  """Data on the device, batched augmentation and validation there, bf16 autocast."""
  torch.manual_seed(0)
  images = preload(paths[: N_TRAIN + N_VAL], device)
  train_x, val_x = minmax(images[:N_TRAIN]), minmax(images[N_TRAIN:])
  model = peer.CAE().to(device).to(memory_format=torch.channels_last)
  opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
  gen = torch.Generator(device=device).manual_seed(0)
  # Static shapes: one graph for the training batch (30), one for the validation set (70).
  net = torch.compile(model, dynamic=False) if compile_model else model

  def run(n_epochs: int) -> tuple[float, int]:
    steps, start = 0, time.perf_counter()
    for epoch in range(1, n_epochs + 1):
      model.train()
      order = torch.randperm(N_TRAIN, device=device, generator=gen)
      for i in range(N_TRAIN // BATCH):
        x = augment(train_x[order[i * BATCH : (i + 1) * BATCH]], gen)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
          loss = F.mse_loss(net(x).float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
      if epoch % val_every == 0:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
          scores = ((net(val_x).float() - val_x) ** 2).mean(dim=(1, 2, 3))
        scores.cpu()
    _sync(device)
    return time.perf_counter() - start, steps

  start = time.perf_counter()
  run(warmup)  # compiles (train and eval graphs) when compile_model
  warmup_s = time.perf_counter() - start
  wall, steps = run(epochs)
  return {
    'dtype': 'bfloat16 autocast',
    'compiled': compile_model,
    'wall_s': wall,
    'steps': steps,
    'warmup_s': round(warmup_s, 2),
  }


def peer_as_is(peer_path: str, images: str, epochs: int, val_every: int) -> dict:
  """The peer script itself, as the study would run it; its own JSON line."""
  cmd = [sys.executable, peer_path, '--images', images, '--epochs', str(epochs)]
  cmd += ['--val-every', str(val_every)]
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
  if done.returncode:
    raise RuntimeError(f'{" ".join(cmd)} exited {done.returncode}: {done.stderr[-500:]}')
  line = [ln for ln in done.stdout.splitlines() if ln.startswith('{')][-1]
  result = json.loads(line)
  return {
    'dtype': 'float32',
    'compiled': False,
    'wall_s': result['wall_s'],
    'steps': result['steps'],
    'device': 'cpu (the peer never moves to a GPU)',
    'threads': result.get('threads'),
  }


def main() -> None:
  """Runs the ways in order and appends one JSON record per way to --records."""
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument('--peer', required=True)
  p.add_argument('--images', required=True)
  p.add_argument('--records', required=True)
  p.add_argument('--smoke', action='store_true', help='a few epochs (CPU test)')
  # The quickest first, so that a stage cut by its guard has the figure that matters most.
  p.add_argument('--ways', default='fast_eager,study_loop,fast_compiled,peer_as_is')
  a = p.parse_args()
  val_every = SMOKE_VAL_EVERY if a.smoke else VAL_EVERY
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  torch.backends.cudnn.benchmark = True
  peer = load_peer(a.peer)
  paths = image_paths(a.images)
  if len(paths) < N_TRAIN + N_VAL:
    raise SystemExit(f'{a.images}: {len(paths)} images, {N_TRAIN + N_VAL} needed')
  # (timed epochs, warm-up epochs) per way.
  epochs = {
    'study_loop': (1, 1) if a.smoke else (20, 2),
    'fast_eager': (1, 1) if a.smoke else (200, 20),
    'fast_compiled': (1, 1) if a.smoke else (200, 20),
    'peer_as_is': (1, 0) if a.smoke else (20, 0),
  }
  ways = [w for w in a.ways.split(',') if w]
  if a.smoke and 'fast_compiled' in ways:
    ways.remove('fast_compiled')  # inductor's CPU compile alone outlasts a smoke run
  for way in ways:
    n, warmup = epochs[way]
    row = {
      'table': 'torch',
      'way': way,
      'way_group': way.split('_')[0],
      'device': str(device),
      'epochs': n,
      'val_every': val_every,
      'torch': torch.__version__,
    }
    try:
      if way == 'study_loop':
        row.update(study_loop(peer, paths, device, n, warmup, val_every))
      elif way == 'fast_eager':
        row.update(fast(peer, paths, device, n, warmup, val_every, compile_model=False))
      elif way == 'fast_compiled':
        row.update(fast(peer, paths, device, n, warmup, val_every, compile_model=True))
      elif way == 'peer_as_is':
        row.update(peer_as_is(a.peer, a.images, n, val_every))
      else:
        raise ValueError(f'unknown way {way!r}')
      row['train_images_per_s'] = round(row['steps'] * BATCH / row['wall_s'], 1)
      row['wall_s'] = round(row['wall_s'], 3)
    except Exception as e:  # one way's failure (torch.compile, say) is its row's figure
      row['error'] = f'{type(e).__name__}: {e}'[:600]
      if way == 'fast_compiled':
        row['note'] = 'torch.compile failed: fast_eager is the fast figure'
    with open(a.records, 'a') as f:
      f.write(json.dumps({'record': 'row', **row}) + '\n')
    print(json.dumps(row), flush=True)


if __name__ == '__main__':
  main()
