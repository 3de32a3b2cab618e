r"""One prepared command that measures, on a lent GPU, what users compare.

  bash tools/prepare_device.sh                        # here, before a device session
  bash tools/device_suite.sh                          # there (device tool: carry .whl, .device)
  python tools/device_suite.py --smoke --out=/tmp/s   # here: tiny sizes on the CPU, < 2 min

Every stage runs in its own process under its own wall-clock guard, so a slow or crashing stage
never costs the later ones; a stage's figures are written as it goes, so one that runs out of
time keeps what it measured. Stages, in order (`--skip` / `--only` take names or the groups
'throughput' = modes,steps,layers and 'protocol' = protocol_cae,protocol_ssae,protocol_fanogan):

  env               JAX devices and versions, the carried packages, nvidia-smi.
  modes             training images/s and compile time by mode (host loop with albumentations,
                    device epochs, fold-parallel over the 10 iterations) and dtype:
                    `tools.benchmark.measure`, the CAE first, then the other families.
  steps             each family's train step alone (`tools.benchmark.measure_step`): CAE, SSAE,
                    f-AnoGAN critic step and encoder step, DAGMM, DenseNet121 at 224x224.
  layers            the CAE's ten convolutions, 'plain' vs 'fast' forms (`tools/profiling.py`).
  torch             the same CAE in PyTorch (tools/torch_cae_bench.py with --torch_python): AMP
                    bf16 with the data on the GPU (eager, then torch.compile where it works), the
                    study's DataLoader loop on the GPU, the peer script as written (CPU); ratios
                    uadjax / PyTorch from this run.
  protocol_cae      the study's protocol of the CAE on the real head CT (5000 epochs, validation
                    every 10, the 10 iterations fold-parallel, bfloat16).
  protocol_ssae     the same for the SSAE.
  protocol_fanogan  f-AnoGAN's GAN phase at the study's length (5000 epochs), one iteration.

A stage's status is 'ok', 'skipped' (with the reason: a flag, torch or the data missing, no
time left), 'failed' (with the end of its log), 'timeout', or 'stopped' if the suite itself got
SIGTERM. Guards: each stage has a budget (`--budget=modes=120,torch=60`); unused seconds pass on
to the next stage (a stage whose budget is given explicitly gets exactly that), and the sum
(`--total`, default the budgets of the stages that run) bounds the whole run. Outputs, in
`--out` (default $OUT), rewritten after every stage: suite.json (every figure), suite.md (the
tables), summaries.md (the protocol runs' summaries, with the study's rows), progress.csv
(their progress logs) and suite.log.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = (
  'env',
  'modes',
  'steps',
  'layers',
  'torch',
  'protocol_cae',
  'protocol_ssae',
  'protocol_fanogan',
)
GROUPS = {
  'throughput': ('modes', 'steps', 'layers'),
  'protocol': ('protocol_cae', 'protocol_ssae', 'protocol_fanogan'),
}
# Seconds per stage on the GPU: 520 in all, so that the run with its wheel install stays under
# 9 minutes, inside one 10-minute device call; the CAE's protocol gets the most.
BUDGETS = {
  'env': 15,
  'modes': 100,
  'steps': 75,
  'layers': 30,
  'torch': 75,
  'protocol_cae': 150,
  'protocol_ssae': 50,
  'protocol_fanogan': 25,
}
# --smoke: tiny sizes on the CPU; the budgets are guards, most stages end well before them.
SMOKE_BUDGETS = {
  'env': 30,
  'modes': 60,
  'steps': 60,
  'layers': 30,
  'torch': 60,
  'protocol_cae': 60,
  'protocol_ssae': 60,
  'protocol_fanogan': 60,
}
GRACE_S = 3  # between SIGTERM and SIGKILL of a stage past its guard
MIN_GUARD_S = 5  # a stage left less than this is skipped
LOG_TAIL_BYTES = 1 << 20  # per stage in suite.log
FAMILIES = ('cae', 'ssae', 'wgan', 'fanogan', 'dagmm', 'densenet')
FAMILY_NAMES = {
  'cae': 'CAE',
  'ssae': 'SSAE',
  'wgan': 'f-AnoGAN critic (WGAN-GP)',
  'fanogan': 'f-AnoGAN encoder (izi_f)',
  'dagmm': 'DAGMM',
  'densenet': 'DenseNet121',
}
# (family, mode, dtype) in the order they are measured: what matters most first.
MODE_ITEMS = (
  ('cae', 'fold_parallel', 'bfloat16'),
  ('cae', 'device_epochs', 'bfloat16'),
  ('cae', 'host_loop', 'bfloat16'),
  ('cae', 'device_epochs', 'float32'),
  ('cae', 'fold_parallel', 'float32'),
  ('cae', 'host_loop', 'float32'),
  *[(f, 'fold_parallel', 'bfloat16') for f in ('ssae', 'wgan', 'fanogan', 'dagmm')],
  ('densenet', 'device_epochs', 'bfloat16'),
  *[(f, 'device_epochs', 'bfloat16') for f in ('ssae', 'wgan', 'fanogan', 'dagmm')],
)
SMOKE_MODE_ITEMS = (('cae', 'device_epochs', 'float32'),)
STEP_ITEMS = tuple((f, d) for d in ('bfloat16', 'float32') for f in FAMILIES)
SMOKE_STEP_ITEMS = (('densenet', 'float32'),)  # the supervised path; modes times the CAE
SMOKE_LAYERS = ('encoder_1', 'decoder_3')
PROTOCOL_CONFIGS = {
  'protocol_cae': 'configs/headct/cae.py',
  'protocol_ssae': 'configs/headct/ssae.py',
  'protocol_fanogan': 'configs/headct/fanogan.py',
}
SHARED_PEER = os.path.join(os.path.dirname(REPO), 'shared', 'peer', 'torch_cae.py')
SUMMARY_METRICS = ('auc', 'accuracy', 'recall', 'precision', 'f1', 'specificity')


# -- the stages, each run in its own process (--stage=NAME) --------------------------------------


class Records:
  """A stage's figures as JSON lines, flushed one by one so a killed stage keeps them.

  Each line's 'record' is 'row' (a figure; `table` names its table), 'info' (merged into the
  stage's info) or 'skipped' (the stage did not apply; `reason` says why).
  """

  def __init__(self, path: str):
    self.path = path

  def emit(self, record: str, /, **fields) -> None:
    """Appends one record."""
    with open(self.path, 'a') as f:
      f.write(json.dumps({'record': record, **fields}, default=str) + '\n')
    print(record, json.dumps(fields, default=str)[:400], flush=True)


def family_task(name: str) -> type | None:
  """The task class a suite row trains where it is not the family's own: 'wgan' is f-AnoGAN's
  GAN phase (the f-AnoGAN model with its GAN task)."""
  if name == 'wgan':
    from uadjax.families.fanogan.task import WGANTask

    return WGANTask
  return None


def family_config(name: str, smoke: bool):
  """The config of one family: the study's ('tiny' in smoke); 'wgan' is f-AnoGAN's GAN phase."""
  variant = 'tiny' if smoke else None
  if name == 'densenet':
    from configs.fundus import densenet

    config = densenet.get_config(variant)
    if smoke:
      config.data.image_size = 32
      config.train.batch_size = 8
    return config
  from configs.headct import cae, dagmm, fanogan, ssae

  modules = {'cae': cae, 'ssae': ssae, 'dagmm': dagmm, 'fanogan': fanogan, 'wgan': fanogan}
  config = modules[name].get_config(variant)
  if name == 'wgan':
    from uadjax.families.fanogan import phase as fanogan_phase

    config = fanogan_phase.gan_config(config)
  return config


def _error(e: BaseException) -> str:
  return f'{type(e).__name__}: {e}'[:600]


def stage_env(records: Records, args) -> None:
  """Devices, versions and the packages uadjax needs (importable or not, and why)."""
  import jax

  from tools import benchmark

  info = {
    'python': sys.version.split()[0],
    'platform': platform.platform(),
    **benchmark.environment(),
    'devices': [str(d) for d in jax.devices()],
  }
  with contextlib.suppress(Exception):
    stats = jax.devices()[0].memory_stats() or {}
    info['device_memory_gib'] = round(stats.get('bytes_limit', 0) / 2**30, 1)
  packages = {}
  for name in ('jaxlib', 'optax', 'orbax.checkpoint', 'ml_collections', 'numpy', 'sklearn'):
    packages[name] = _version(name)
  for name in ('albumentations', 'cv2', 'pydicom', 'matplotlib', 'PIL'):
    packages[name] = _version(name)
  info['packages'] = packages
  if shutil.which('nvidia-smi'):
    query = 'name,driver_version,memory.total,clocks.max.sm'
    done = subprocess.run(
      ['nvidia-smi', f'--query-gpu={query}', '--format=csv,noheader'],
      capture_output=True,
      text=True,
      timeout=20,
    )
    info['nvidia_smi'] = (done.stdout or done.stderr).strip()
  with contextlib.suppress(Exception):
    info['git_head'] = subprocess.run(
      ['git', 'rev-parse', 'HEAD'], cwd=REPO, capture_output=True, text=True, timeout=10
    ).stdout.strip()
  records.emit('info', **info)


def _version(module: str) -> str:
  try:
    mod = importlib.import_module(module)
  except Exception as e:  # any import failure is the figure here
    return f'not importable ({_error(e)})'
  return str(getattr(mod, '__version__', 'installed'))


def stage_modes(records: Records, args) -> None:
  """`benchmark.measure` of each (family, mode, dtype), the CAE's first."""
  from tools import benchmark

  items = SMOKE_MODE_ITEMS if args.smoke else MODE_ITEMS
  for family, mode, dtype in items:
    config = family_config(family, args.smoke)
    epochs = args.epochs or (config.cv.val_every if args.smoke else 100)
    if family == 'densenet' and not args.epochs:
      epochs = 1 if args.smoke else 10
    epochs = max(epochs // config.cv.val_every, 1) * config.cv.val_every
    row = {'table': 'modes', 'family': family, 'mode': mode, 'dtype': dtype}
    try:
      row.update(benchmark.measure(config, mode, dtype, epochs, task_class=family_task(family)))
    except ImportError as e:  # the host loop without albumentations
      row['skipped'] = f'{mode} needs {e.name or "a package"}: {_error(e)}'
    except Exception as e:  # a failed item is recorded; the next one runs
      row['error'] = _error(e)
    records.emit('row', **row)


def stage_steps(records: Records, args) -> None:
  """`benchmark.measure_step` of each family and dtype."""
  from tools import benchmark

  items = SMOKE_STEP_ITEMS if args.smoke else STEP_ITEMS
  # Both convolution forms of the whole model (uadjax/nn/conv.py reads UADJAX_CONV_IMPL
  # when a model is traced): the gradient of XLA's transposed convolution is slow on some
  # backends, which 'fast' avoids.
  for impl in ('plain', 'fast'):
    os.environ['UADJAX_CONV_IMPL'] = impl
    for family, dtype in items:
      row = {'table': 'steps', 'family': family, 'dtype': dtype, 'impl': impl}
      try:
        config = family_config(family, args.smoke)
        row.update(
          benchmark.measure_step(
            config,
            dtype,
            steps=args.steps or (2 if args.smoke else 50),
            task_class=family_task(family),
          )
        )
      except Exception as e:  # a failed item is recorded; the next one runs
        row['error'] = _error(e)
      records.emit('row', **row)
  os.environ.pop('UADJAX_CONV_IMPL')


def stage_layers(records: Records, args) -> None:
  """The CAE's convolutions under each form ('plain', 'fast') and dtype."""
  import jax.numpy as jnp

  from tools import profiling

  dtypes = (
    (('float32', jnp.float32),)
    if args.smoke
    else (
      ('bfloat16', jnp.bfloat16),
      ('float32', jnp.float32),
    )
  )
  batch, repeats = (4, 2) if args.smoke else (30, 20)
  for _, dtype in dtypes:
    for name, cls, size, cin, cout in profiling.CAE_LAYERS:
      if args.smoke and name not in SMOKE_LAYERS:
        continue
      for impl in ('plain', 'fast'):
        row = {'table': 'layers', 'layer': name}
        try:
          row.update(
            profiling.time_layer(
              cls, size, cin, cout, impl=impl, dtype=dtype, batch=batch, repeats=repeats
            )
          )
        except Exception as e:  # a failed item is recorded; the next one runs
          row.update(impl=impl, error=_error(e))
        records.emit('row', **row)


def stage_torch(records: Records, args) -> None:
  """tools/torch_cae_bench.py under --torch_python, on the carried head CT (phantom PNGs in
  smoke); its JSON lines become this stage's rows."""
  check = subprocess.run(
    [args.torch_python, '-c', 'import torch; print(torch.__version__)'],
    capture_output=True,
    text=True,
    timeout=120,
  )
  if check.returncode:
    tail = (check.stderr or check.stdout).strip().splitlines()[-1:] or ['']
    records.emit('skipped', reason=f'torch is not importable by {args.torch_python}: {tail[0]}')
    return
  peer = os.path.abspath(args.torch_cae)
  if args.smoke and not os.path.isfile(peer):
    peer = SHARED_PEER  # beside a checkout, where prepare_device.sh has not run; may be absent
  if not os.path.isfile(peer):
    records.emit('skipped', reason=f'no PyTorch peer at {peer} (run tools/prepare_device.sh)')
    return
  images = os.path.abspath(args.data) if not args.smoke else _phantom_pngs(args.work)
  if not os.path.isdir(images):
    records.emit('skipped', reason=f'no head CT at {images} (run tools/prepare_device.sh)')
    return
  cmd = [
    args.torch_python,
    os.path.join(REPO, 'tools', 'torch_cae_bench.py'),
    f'--peer={peer}',
    f'--images={images}',
    f'--records={records.path}',
  ]
  if args.smoke:
    cmd += ['--smoke']
  records.emit('info', torch=check.stdout.strip(), command=' '.join(cmd))
  done = subprocess.run(cmd)
  if done.returncode:
    raise SystemExit(f'torch_cae_bench.py exited {done.returncode}')


def _phantom_pngs(work: str) -> str:
  """The smoke run's torch data: uadjax's phantoms as 8-bit PNGs named like the head CT."""
  import numpy as np
  from PIL import Image

  from uadjax.data import phantoms

  folder = os.path.join(work, 'phantom_pngs')
  os.makedirs(folder, exist_ok=True)
  images, _, _, _ = phantoms.make_phantoms(70, 70, 32, 0)
  for i, x in enumerate(images):
    pixels = np.round(np.asarray(x)[..., 0] * 255).astype(np.uint8)
    Image.fromarray(pixels, 'L').save(os.path.join(folder, f'{i:03d}.png'))
  return folder


STAGE_FUNCTIONS = {
  'env': stage_env,
  'modes': stage_modes,
  'steps': stage_steps,
  'layers': stage_layers,
  'torch': stage_torch,
}


def run_stage(args) -> None:
  """The body of a stage process (--stage=NAME): the stage function, then exit."""
  sys.path.insert(0, REPO)
  os.chdir(REPO)
  STAGE_FUNCTIONS[args.stage](Records(args.records), args)


# -- the driver: guards, collection, outputs ------------------------------------------------------


def protocol_command(stage: str, args, workdir: str) -> list[str]:
  """The cross_validate command of a protocol stage (the study's protocol; `:tiny` in smoke).

  Output-only changes keep the run inside its guard: the 'latest' checkpoint only at the end,
  no figures or report (none of them would come back from the device).
  """
  config = PROTOCOL_CONFIGS[stage]
  cmd = [sys.executable, '-m', 'experiments.cross_validate', f'--workdir={workdir}', '--noreport']
  if args.smoke:
    cmd += [f'--config={config}:tiny,phantoms', '--config.cv.parallel=True']
  else:
    cmd += [
      f'--config={config}',
      f'--config.data.root={os.path.abspath(args.data)}',
      '--config.train.dtype=bfloat16',
      '--config.cv.parallel=True',
      '--config.cv.checkpoint_every=5000',
      '--config.cv.figures=False',
    ]
  if stage == 'protocol_fanogan':
    # The GAN phase at the study's length on one iteration; the encoder phase cut to one
    # validation (10 epochs), so the stage measures phase 1.
    cmd += ['--config.cv.iterations=0']
    if not args.smoke:
      cmd += ['--config.train.epochs=10', '--config.gan.checkpoint_every=5000']
  return cmd


def _read_csv(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def protocol_result(workdir: str, start: float) -> dict:
  """What a protocol run left: its summary, its last progress row, f-AnoGAN's GAN selection."""
  out: dict = {'workdir': workdir}
  summary_path = os.path.join(workdir, 'summary.json')
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
    out['n_iterations'] = summary.get('n_iterations')
    out['metrics'] = {
      k: {'mean': v.get('mean'), 'std': v.get('std')}
      for k, v in summary.get('metrics', {}).items()
      if isinstance(v, dict)
    }
  md = os.path.join(workdir, 'summary.md')
  if os.path.exists(md):
    with open(md) as f:
      out['summary_md'] = f.read()
  for phase, folder in (('train', workdir), ('gan', os.path.join(workdir, 'gan'))):
    rows = _read_csv(os.path.join(folder, 'progress.csv'))
    if rows:
      last = rows[-1]
      out[f'{phase}_progress'] = {
        'epoch': int(last['epoch']),
        'epochs': int(last['epochs']),
        'images_per_s': float(last['images_per_s']),
        'seconds_left': float(last['seconds_left']),
        'seconds_since_start': round(float(last['time']) - start, 1),
      }
      out.setdefault('progress_rows', []).extend({'phase': phase, **r} for r in rows)
  gan_json = os.path.join(workdir, 'gan', 'iter_00', 'gan.json')
  if os.path.exists(gan_json):
    with open(gan_json) as f:
      gan = json.load(f)
    out['gan'] = {k: gan.get(k) for k in ('selected_epoch', 'selected_swd', 'selection')}
  return out


def _kill(proc: subprocess.Popen) -> None:
  for sig in (signal.SIGTERM, signal.SIGKILL):
    with contextlib.suppress(ProcessLookupError):
      os.killpg(proc.pid, sig)
    try:
      proc.wait(timeout=GRACE_S)
      return
    except subprocess.TimeoutExpired:
      continue


def guarded(cmd: list[str], guard: float, log_path: str, env: dict) -> tuple[str, int | None]:
  """Runs `cmd` in its own process group for at most `guard` seconds, output to `log_path`.
  Returns ('done', exit code) or ('timeout', None); a timed-out group is killed."""
  with open(log_path, 'ab') as log:
    # Its own process group, to kill the stage with its children; not its own session, so
    # that whatever stops this driver (the device call's time limit) stops the stage too.
    proc = subprocess.Popen(
      cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=os.setpgrp
    )
    try:
      return 'done', proc.wait(timeout=guard)
    except subprocess.TimeoutExpired:
      _kill(proc)
      return 'timeout', None
    except BaseException:  # the driver is stopped (SIGTERM, Ctrl-C): the stage goes too
      _kill(proc)
      raise


def _log_tail(path: str, lines: int = 6) -> str:
  if not os.path.exists(path):
    return ''
  with open(path, 'rb') as f:
    f.seek(max(os.path.getsize(path) - 4000, 0))
    text = f.read().decode('utf-8', 'replace')
  return ' / '.join(text.strip().splitlines()[-lines:])


def read_records(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      with contextlib.suppress(json.JSONDecodeError):  # a line cut by a kill
        out.append(json.loads(line))
  return out


def collect(stage: str, records: list[dict], outcome: str, code, log_path: str) -> dict:
  """A stage's entry in suite.json from its records and how its process ended."""
  result: dict = {'rows': [], 'info': {}}
  for r in records:
    record = r.pop('record', 'row')
    if record == 'row':
      result['rows'].append(r)
    elif record == 'info':
      result['info'].update(r)
    elif record == 'skipped':
      result['status'], result['reason'] = 'skipped', r.get('reason')
  if outcome == 'timeout':
    result['status'] = 'timeout'
    result['reason'] = 'stopped at its guard; the figures measured before it are kept'
  elif code:
    result['status'] = 'failed'
    result['reason'] = f'exit code {code}: {_log_tail(log_path, 2)}'
  result.setdefault('status', 'ok')
  return result


def select_stages(only: str, skip: str) -> tuple[list[str], dict]:
  """The stages to run, and the reason of each one left out."""

  def expand(text: str) -> list[str]:
    names = []
    for name in (t.strip() for t in text.split(',') if t.strip()):
      if name not in STAGES and name not in GROUPS:
        raise SystemExit(f'unknown stage {name!r}; stages: {STAGES}, groups: {sorted(GROUPS)}')
      names += GROUPS.get(name, [name])
    return names

  chosen = expand(only) if only else list(STAGES)
  skipped = set(expand(skip))
  left_out = {}
  for s in STAGES:
    if s not in chosen:
      left_out[s] = 'not in --only'
    elif s in skipped:
      left_out[s] = 'skipped by --skip'
  return [s for s in STAGES if s in chosen and s not in skipped], left_out


def parse_budgets(texts: list[str]) -> dict:
  """'modes=120,torch=60' (repeatable) -> {'modes': 120.0, 'torch': 60.0}."""
  out = {}
  for text in texts:
    for part in (p.strip() for p in text.split(',') if p.strip()):
      name, _, value = part.partition('=')
      if name not in STAGES:
        raise SystemExit(f'--budget: unknown stage {name!r}; stages: {STAGES}')
      out[name] = float(value)
  return out


def stage_env_vars(args) -> dict:
  """The stage processes' environment: the repository on the path, unbuffered output, the CPU
  in smoke."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO, env.get('PYTHONPATH')) if p)
  env['PYTHONUNBUFFERED'] = '1'
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')
  if args.smoke:
    env['JAX_PLATFORMS'] = 'cpu'
  return env


def stage_args(args, stage: str, records: str) -> list[str]:
  """This script's command line for one stage process."""
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    f'--stage={stage}',
    f'--records={records}',
    f'--work={args.work}',
    f'--data={args.data}',
    f'--torch_cae={args.torch_cae}',
    f'--torch_python={args.torch_python}',
    f'--epochs={args.epochs}',
    f'--steps={args.steps}',
  ]
  return cmd + (['--smoke'] if args.smoke else [])


def run_suite(args) -> dict:
  """Runs the selected stages under their guards; writes and returns the results."""
  started = time.time()
  out = args.out or os.environ.get('OUT') or os.path.join(REPO, 'runs', 'device_suite')
  os.makedirs(out, exist_ok=True)
  args.work = os.path.abspath(args.work or tempfile.mkdtemp(prefix='device_suite_'))
  for sub in ('records', 'logs', 'runs'):
    os.makedirs(os.path.join(args.work, sub), exist_ok=True)
  budgets = dict(SMOKE_BUDGETS if args.smoke else BUDGETS)
  explicit = parse_budgets(args.budget)
  budgets.update(explicit)
  chosen, left_out = select_stages(args.only, args.skip)
  total = args.total or sum(budgets[s] for s in chosen)
  deadline = started + total
  suite = {
    'argv': sys.argv[1:],
    'smoke': args.smoke,
    'budgets_s': {s: budgets[s] for s in chosen},
    'total_budget_s': total,
    'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(started)),
    'work': args.work,
  }
  results: dict = {'suite': suite, 'stages': {}}
  say(f'device suite: stages {",".join(chosen)}; total budget {total:.0f} s; work {args.work}')
  plan = Plan(chosen, left_out, budgets, set(explicit), deadline, out)
  previous = signal.signal(signal.SIGTERM, _stop)
  try:
    _run_stages(args, results, plan)
  except Stopped as e:
    say(f'stopped ({e}); the figures so far are written')
    suite['stopped'] = str(e)
    for stage in STAGES:
      results['stages'].setdefault(
        stage, {'status': 'skipped', 'reason': 'the suite was stopped before this stage'}
      )
  finally:
    signal.signal(signal.SIGTERM, previous)
    suite['wall_s'] = round(time.time() - started, 1)
    _write(results, args, out)
  say(f'outputs in {out}: {", ".join(sorted(os.listdir(out)))}')
  return results


@dataclasses.dataclass(frozen=True)
class Plan:
  """What the driver runs.

  Attributes:
    chosen: the stages to run, in order.
    left_out: stage -> why it does not run.
    budgets: stage -> seconds.
    explicit: the stages whose budget the command line gave (no carry-over for them).
    deadline: time.time() by which the whole run ends.
    out: the output folder.
  """

  chosen: list
  left_out: dict
  budgets: dict
  explicit: set
  deadline: float
  out: str


class Stopped(Exception):
  """The driver got SIGTERM."""


def _stop(signum, frame):
  raise Stopped(f'signal {signum}')


def _write(results: dict, args, out: str) -> None:
  # In smoke the uadjax CAE is the tiny one at 32x32, the PyTorch one the study's: no ratio.
  results['ratios'] = [] if args.smoke else torch_ratios(results['stages'])
  write_outputs(results, out, args.work)


def _run_stages(args, results: dict, plan: Plan) -> None:
  """The stages in order, each under its guard; the outputs rewritten after each."""
  total = results['suite']['total_budget_s']
  env = stage_env_vars(args)
  for stage in STAGES:
    if stage not in plan.chosen:
      results['stages'][stage] = {'status': 'skipped', 'reason': plan.left_out[stage]}
      continue
    now = time.time()
    later = sum(plan.budgets[s] for s in plan.chosen[plan.chosen.index(stage) + 1 :])
    if stage in plan.explicit:
      guard = plan.budgets[stage]
    else:  # its budget and what the stages before it left unused
      guard = plan.deadline - now - later - GRACE_S
    guard = max(min(guard, plan.deadline - now - GRACE_S), 0.0)
    entry = prepare_stage(stage, args)
    if entry is None and guard < MIN_GUARD_S and stage not in plan.explicit:
      entry = {'status': 'skipped', 'reason': f'no time left in the total budget ({total:.0f} s)'}
    if entry is not None:
      results['stages'][stage] = entry
      say(f'{stage}: skipped ({entry["reason"]})')
      continue
    log_path = os.path.join(args.work, 'logs', f'{stage}.log')
    records_path = os.path.join(args.work, 'records', f'{stage}.jsonl')
    workdir = os.path.join(args.work, 'runs', stage)
    if stage in PROTOCOL_CONFIGS:
      shutil.rmtree(workdir, ignore_errors=True)
      cmd = protocol_command(stage, args, workdir)
    else:
      cmd = stage_args(args, stage, records_path)
    say(f'{stage}: running, guard {guard:.0f} s')
    results['stages'][stage] = {
      'status': 'stopped',
      'reason': 'the suite was stopped while this stage ran',
      'guard_s': round(guard, 1),
    }
    start = time.time()
    outcome, code = guarded(cmd, guard, log_path, env)
    entry = collect(stage, read_records(records_path), outcome, code, log_path)
    entry.update(guard_s=round(guard, 1), wall_s=round(time.time() - start, 1))
    entry['command'] = ' '.join(cmd)
    if stage in PROTOCOL_CONFIGS:
      entry.update(protocol_result(workdir, start))
    elif outcome == 'timeout' and planned(stage, args.smoke):
      done = {item_label(r) for r in entry['rows']}
      entry['not_reached'] = [i for i in planned(stage, args.smoke) if i not in done]
    results['stages'][stage] = entry
    say(f'{stage}: {entry["status"]} in {entry["wall_s"]} s' + _reason(entry))
    _write(results, args, plan.out)  # what is measured so far comes back if the call is cut


def planned(stage: str, smoke: bool) -> list[str]:
  """The labels of the items a throughput stage measures, in order."""
  if stage == 'modes':
    return [' '.join(i) for i in (SMOKE_MODE_ITEMS if smoke else MODE_ITEMS)]
  if stage == 'steps':
    return [' '.join(i) for i in (SMOKE_STEP_ITEMS if smoke else STEP_ITEMS)]
  return []


def item_label(row: dict) -> str:
  """A measured row's label, as `planned` spells it."""
  keys = ('family', 'mode', 'dtype') if 'mode' in row else ('family', 'dtype')
  return ' '.join(str(row.get(k)) for k in keys)


def _reason(entry: dict) -> str:
  return f' ({entry["reason"][:300]})' if entry.get('reason') else ''


def prepare_stage(stage: str, args) -> dict | None:
  """A 'skipped' entry when a stage cannot run here (its data is missing), else None."""
  if stage in PROTOCOL_CONFIGS and not args.smoke:
    labels = os.path.join(args.data, 'labels.csv')
    if not os.path.exists(labels):
      return {
        'status': 'skipped',
        'reason': f'no head CT at {os.path.abspath(args.data)} (run tools/prepare_device.sh)',
      }
  return None


_LOG: list[str] = []


def say(line: str) -> None:
  """Prints a driver line and keeps it for suite.log."""
  line = f'[{time.strftime("%H:%M:%S")}] {line}'
  _LOG.append(line)
  print(line, flush=True)


def _best(rows, **match):
  rates = [
    r['train_images_per_s']
    for r in rows
    if all(r.get(k) == v for k, v in match.items()) and r.get('train_images_per_s')
  ]
  return max(rates) if rates else None


def torch_ratios(stages: dict) -> list[dict]:
  """uadjax's CAE training images/s over PyTorch's, from this run's modes and torch stages."""
  modes = stages.get('modes', {}).get('rows', [])
  torch_rows = stages.get('torch', {}).get('rows', [])
  pairs = (
    ('device_epochs', 'float32', 'study'),
    ('device_epochs', 'bfloat16', 'fast'),
    ('fold_parallel', 'bfloat16', 'fast'),
    ('host_loop', 'float32', 'study'),
  )
  out = []
  for mode, dtype, way in pairs:
    ours = _best(modes, family='cae', mode=mode, dtype=dtype)
    theirs = _best(torch_rows, way_group=way)
    if ours and theirs:
      out.append(
        {
          'uadjax': f'{mode} {dtype}',
          'torch': way,
          'uadjax_images_per_s': ours,
          'torch_images_per_s': theirs,
          'ratio': round(ours / theirs, 2),
        }
      )
  return out


# -- outputs ------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list]) -> list[str]:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(_cell(c) for c in r) + ' |' for r in rows]
  return lines + ['']


def _cell(value) -> str:
  text = '' if value is None else str(value)
  return ' '.join(text.split()).replace('|', '/')


def _note(row: dict) -> str:
  if row.get('skipped'):
    return 'skipped: ' + row['skipped']
  if row.get('error'):
    return 'error: ' + row['error']
  return ''


def _stage_note(entry: dict) -> str:
  note = (entry.get('reason') or '')[:200]
  if entry.get('not_reached'):
    note += f'; not reached: {", ".join(entry["not_reached"])}'
  return note


def _mean_std(entry) -> str:
  if not entry or entry.get('mean') is None:
    return '–'
  return f'{entry["mean"]:.2f} ± {entry["std"]:.2f}'


def markdown(results: dict) -> str:
  """suite.md: the stages' status, then one table per kind of figure."""
  suite, stages = results['suite'], results['stages']
  kind = 'smoke run (tiny sizes, CPU)' if suite['smoke'] else 'full run'
  env = stages.get('env', {}).get('info', {})
  lines = [f'# Device suite, {kind}, {suite["started"]}', '']
  if env:
    lines += [
      f'{env.get("device_kind")} x{env.get("device_count")} ({env.get("backend")}), '
      f'JAX {env.get("jax")}, Flax {env.get("flax")}, Python {env.get("python")}.',
      '',
    ]
  lines += ['## Stages', '']
  lines += _table(
    ['stage', 'status', 'wall s', 'guard s', 'note'],
    [
      [s, e['status'], e.get('wall_s'), e.get('guard_s'), _stage_note(e)] for s, e in stages.items()
    ],
  )
  modes = stages.get('modes', {}).get('rows', [])
  if modes:
    lines += ['## Training modes (tools.benchmark.measure; validation included)', '']
    lines += _table(
      ['model', 'mode', 'dtype', 'iterations', 'img/s', 'compile s', 'full protocol h', 'note'],
      [
        [
          FAMILY_NAMES.get(r['family'], r['family']),
          r['mode'],
          r['dtype'],
          r.get('iterations'),
          r.get('train_images_per_s'),
          r.get('compile_s'),
          r.get('projected_protocol_h'),
          _note(r),
        ]
        for r in modes
      ],
    )
  steps = stages.get('steps', {}).get('rows', [])
  if steps:
    lines += ['## Train steps alone (tools.benchmark.measure_step; fixed batch)', '']
    lines += _table(
      [
        'model',
        'dtype',
        'conv',
        'batch',
        'image',
        'params M',
        'img/s',
        'ms/step',
        'compile s',
        'note',
      ],
      [
        [
          FAMILY_NAMES.get(r['family'], r['family']),
          r['dtype'],
          r.get('impl', 'auto'),
          r.get('batch'),
          'x'.join(str(d) for d in r.get('image', [])),
          r.get('params_m'),
          r.get('train_images_per_s'),
          r.get('step_ms'),
          r.get('compile_s'),
          _note(r) or ('' if r.get('finite', True) else 'loss not finite'),
        ]
        for r in steps
      ],
    )
  layers = stages.get('layers', {}).get('rows', [])
  if layers:
    lines += ['## CAE convolutions, plain vs fast (tools/profiling.py; ms per call)', '']
    totals: dict = {}
    for r in layers:
      if 'forward_ms' in r:
        t = totals.setdefault((r['dtype'], r['impl']), [0.0, 0.0, 0])
        t[0] += r['forward_ms']
        t[1] += r['backward_ms']
        t[2] += 1
    lines += _table(
      ['dtype', 'impl', 'layers', 'forward ms (sum)', 'backward ms (sum)'],
      [[d, i, n, round(f, 3), round(b, 3)] for (d, i), (f, b, n) in totals.items()],
    )
    lines += _table(
      ['layer', 'dtype', 'impl', 'fwd ms', 'bwd ms', 'fwd GFLOP/s', 'bwd GFLOP/s', 'note'],
      [
        [
          r['layer'],
          r.get('dtype'),
          r['impl'],
          _round(r.get('forward_ms')),
          _round(r.get('backward_ms')),
          _round(r.get('forward_gflops'), 1),
          _round(r.get('backward_gflops'), 1),
          _note(r),
        ]
        for r in layers
      ],
    )
  torch_rows = stages.get('torch', {}).get('rows', [])
  if torch_rows:
    lines += ['## The CAE in PyTorch (tools/torch_cae_bench.py)', '']
    lines += _table(
      ['way', 'device', 'dtype', 'compiled', 'epochs', 'img/s', 'note'],
      [
        [
          r.get('way'),
          r.get('device'),
          r.get('dtype'),
          r.get('compiled'),
          r.get('epochs'),
          r.get('train_images_per_s'),
          r.get('note') or _note(r),
        ]
        for r in torch_rows
      ],
    )
  if results.get('ratios'):
    lines += ['## uadjax / PyTorch, CAE training images/s, this run', '']
    lines += _table(
      ['uadjax', 'PyTorch', 'uadjax img/s', 'PyTorch img/s', 'ratio'],
      [
        [r['uadjax'], r['torch'], r['uadjax_images_per_s'], r['torch_images_per_s'], r['ratio']]
        for r in results['ratios']
      ],
    )
  protocol = [(s, e) for s, e in stages.items() if s in PROTOCOL_CONFIGS]
  if any(e['status'] != 'skipped' for _, e in protocol):
    lines += ['## The study protocol (summaries.md has each summary beside the study row)', '']
    rows = []
    for s, e in protocol:
      if e['status'] == 'skipped':
        continue
      m = e.get('metrics', {})
      progress = e.get('gan_progress') if s == 'protocol_fanogan' else e.get('train_progress')
      reached = f'{progress["epoch"]}/{progress["epochs"]}' if progress else ''
      rate = progress['images_per_s'] if progress else ''
      extra = ''
      if e.get('gan'):
        extra = f'GAN selected at epoch {e["gan"]["selected_epoch"]}'
        extra += f', SWD {e["gan"]["selected_swd"]:.3g}'
      rows.append(
        [s.removeprefix('protocol_'), e['status'], e.get('wall_s'), reached, rate]
        + [_mean_std(m.get(k)) for k in SUMMARY_METRICS]
        + [extra]
      )
    lines += _table(
      ['model', 'status', 'wall s', 'epochs reached', 'img/s', 'AUC', 'accuracy', 'recall']
      + ['precision', 'F1', 'specificity', 'note'],
      rows,
    )
  return '\n'.join(lines)


def _round(value, digits: int = 3):
  return None if value is None else round(value, digits)


def write_outputs(results: dict, out: str, work: str) -> None:
  """suite.json, suite.md, summaries.md, progress.csv and suite.log in `out` (5 files)."""
  progress = []
  summaries = []
  for stage, entry in results['stages'].items():
    for row in entry.get('progress_rows', []):
      progress.append({'stage': stage, **row})
    if entry.get('summary_md'):
      summaries.append(f'# {stage} ({entry["status"]}, {entry.get("wall_s")} s)\n\n')
      summaries.append(entry['summary_md'] + '\n\n')
  # The summaries and progress rows go to their own files.
  stages = {
    s: {k: v for k, v in e.items() if k not in ('progress_rows', 'summary_md')}
    for s, e in results['stages'].items()
  }
  with open(os.path.join(out, 'suite.json'), 'w') as f:
    json.dump({**results, 'stages': stages}, f, indent=1, default=str)
  with open(os.path.join(out, 'suite.md'), 'w') as f:
    f.write(markdown(results) + '\n')
  with open(os.path.join(out, 'summaries.md'), 'w') as f:
    f.write(''.join(summaries) or 'No protocol run finished.\n')
  if progress:
    columns = list(dict.fromkeys(k for row in progress for k in row))
    with open(os.path.join(out, 'progress.csv'), 'w', newline='') as f:
      writer = csv.DictWriter(f, columns)
      writer.writeheader()
      writer.writerows(progress)
  with open(os.path.join(out, 'suite.log'), 'w') as f:
    f.write('\n'.join(_LOG) + '\n')
    for stage in STAGES:
      path = os.path.join(work, 'logs', f'{stage}.log')
      if not os.path.exists(path):
        continue
      size = os.path.getsize(path)
      with open(path, 'rb') as log:
        log.seek(max(size - LOG_TAIL_BYTES, 0))
        text = log.read().decode('utf-8', 'replace')
      cut = f' (last {LOG_TAIL_BYTES} of {size} bytes)' if size > LOG_TAIL_BYTES else ''
      f.write(f'\n===== {stage}{cut} =====\n{text}')


def parse_args(argv=None):
  """The command line (see the module docstring)."""
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--smoke', action='store_true', help='tiny sizes on the CPU, well under 2 min')
  p.add_argument('--skip', default='', help='stages or groups to leave out, comma-separated')
  p.add_argument('--only', default='', help='run only these stages or groups')
  p.add_argument('--budget', action='append', default=[], help='STAGE=SECONDS[,...]')
  p.add_argument('--total', type=float, default=0, help='total seconds (default: the budgets)')
  p.add_argument('--out', default='', help='output folder (default $OUT)')
  p.add_argument('--work', default='', help='scratch folder (default a new temporary one)')
  p.add_argument('--data', default=os.path.join(REPO, '.device', 'head_ct'), help='head CT')
  p.add_argument(
    '--torch_cae', default=os.path.join(REPO, '.device', 'torch_cae.py'), help='PyTorch peer'
  )
  p.add_argument('--torch_python', default=sys.executable, help='the python that has torch')
  p.add_argument('--epochs', type=int, default=0, help='modes: measured epochs (0: default)')
  p.add_argument('--steps', type=int, default=0, help='steps: measured steps (0: default)')
  p.add_argument('--stage', default='', help=argparse.SUPPRESS)
  p.add_argument('--records', default='', help=argparse.SUPPRESS)
  return p.parse_args(argv)


def main(argv=None) -> None:
  """Runs the suite, or one stage when called by it (--stage)."""
  args = parse_args(argv)
  if args.stage:
    run_stage(args)
    return
  results = run_suite(args)
  print(markdown(results))


if __name__ == '__main__':
  main()
