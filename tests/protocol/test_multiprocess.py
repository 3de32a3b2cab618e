"""The protocol over several processes (jax.distributed on one machine, gloo collectives):
two processes give the summary of one, a killed process stops the other with JAX's message,
the same launch resumes, and one process restores the checkpoints afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from tests.helpers import REPO, cross_validate, cross_validate_cmd, env_without_gpu, epochs_logged
from uadjax import io

FLAGS = [
  '--config.train.epochs=40',
  '--config.cv.epochs_per_call=2',
  '--config.cv.checkpoint_every=10',
  '--noreport',
]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  env = env_without_gpu()
  env['XLA_FLAGS'] += f' --xla_force_host_platform_device_count={devices}'
  return env


def _launch(workdir, n: int = 2) -> list[subprocess.Popen]:
  """n processes of one run, one CPU device each, coordinator on a free loopback port."""
  port = _free_port()
  return [
    subprocess.Popen(
      cross_validate_cmd(
        workdir,
        *FLAGS,
        '--distributed',
        f'--coordinator_address=127.0.0.1:{port}',
        f'--num_processes={n}',
        f'--process_id={i}',
        '--heartbeat_timeout=10',
      ),
      cwd=REPO,
      env=_env(1),
      stderr=subprocess.PIPE,
      stdout=subprocess.DEVNULL,
      text=True,
    )
    for i in range(n)
  ]


def _finish(procs, timeout=300) -> list[str]:
  logs = []
  try:
    for p in procs:
      logs.append(p.communicate(timeout=timeout)[1])
  finally:
    for p in procs:  # never leave a process behind, whatever failed
      if p.poll() is None:
        p.kill()
        p.wait()
  return logs


def _single(workdir, devices: int) -> dict:
  cross_validate(workdir, *FLAGS, env=_env(devices), timeout=300)
  return io.read_json(workdir / 'summary.json')


def test_two_processes_a_kill_a_resume_and_one_process_agree(tmp_path):
  two = tmp_path / 'two'
  procs = _launch(two)
  try:
    deadline = time.time() + 240
    while epochs_logged(two) < 20 and procs[0].poll() is None and time.time() < deadline:
      time.sleep(0.05)
    assert epochs_logged(two) >= 20, 'the two processes did not train'
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    logs = _finish(procs, timeout=120)
  finally:
    _finish(procs, timeout=1)
  # The survivor stops on its own with JAX's message, well within the heartbeat timeout.
  assert procs[0].returncode != 0
  assert time.time() - killed_at < 90
  assert 'another task died' in logs[0] or 'heartbeat' in logs[0], logs[0][-3000:]

  # The same launch resumes and finishes.
  logs = _finish(_launch(two))
  for log in logs:
    assert 'resuming from epoch' in log, log[-3000:]
  assert (two / 'summary.json').exists(), logs[0][-3000:]
  summary = io.read_json(two / 'summary.json')

  # (One process with 2 devices equals one with 1: tests/protocol/test_cv.py, four devices.)
  other = _single(tmp_path / 'one_process', devices=1)
  for name, entry in summary['metrics'].items():
    assert entry['values'] == pytest.approx(other['metrics'][name]['values'], abs=1e-6), name

  # One process restores the run's checkpoints and reproduces its test scores.
  from uadjax import data, inference

  config = inference.load_config(str(two))
  dataset = data.load(config.data)
  for model in inference.load_models(str(two)):
    metrics = io.read_json(two / f'iter_{model.iteration:02d}' / 'metrics.json')
    index = [dataset.names.index(n) for n in metrics['test_names']]
    scores, _ = model.score(dataset.images[index])
    np.testing.assert_allclose(scores, metrics['test_scores'], rtol=1e-4)
  assert sorted(os.listdir(two / 'iter_00' / 'checkpoints')) == ['best', 'latest']
