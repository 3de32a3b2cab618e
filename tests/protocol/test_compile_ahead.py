"""`Group.compile_ahead`: the program it compiles in its thread is the one the first training
call runs (nothing is compiled again), and an error in that thread is raised by `Group.train`."""

from __future__ import annotations

import contextlib

import jax
import pytest

from tests.helpers import TINY_CAE, make_config
from uadjax import protocol as protocol_lib
from uadjax.protocol.group import Group
from uadjax.run.layout import RunDir
from uadjax.train import loop

_BACKEND_COMPILE = '/jax/core/compile/backend_compile_duration'


def _compiles_during(fn) -> int:
  """How many programs XLA compiles while `fn()` runs (to its results)."""
  events = []

  def listener(event, duration, **kwargs):
    if event == _BACKEND_COMPILE:
      events.append(duration)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    jax.block_until_ready(fn())
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  return len(events)


@contextlib.contextmanager
def _group(tmp_path, parallel: bool):
  """A fresh group of iteration 0 of the tiny CAE, with its images and fold placed; its
  checkpoint managers are closed after the block."""
  protocol = protocol_lib.Protocol(make_config(TINY_CAE))
  group = Group(protocol, RunDir(str(tmp_path)), [0], parallel)
  try:
    images = group.placement.replicate(protocol.dataset.images)
    fold = group.placement.put([protocol.fold_data(0)])
    yield group, fold, images
  finally:
    for manager in group.latest:
      manager.close()


@pytest.mark.parametrize('parallel', [False, True])
def test_the_first_training_call_compiles_nothing_after_compile_ahead(tmp_path, parallel):
  with _group(tmp_path, parallel) as (group, fold, images):
    engine = group.p.engine
    group.compile_ahead(images, 1).result()
    carry = group.placement.put(group.restore())
    # What it compiled: one iteration, the epochs program (the validation's programs compile
    # at the first validation); fold-parallel, the training call with its validation.
    if parallel:
      call = engine.compiled_train(1, True)
    else:
      assert engine.validates_between_calls(False)
      call = engine.compiled_epochs()
    assert _compiles_during(lambda: call(carry, fold, images)) == 0


def test_the_same_call_without_compile_ahead_compiles_its_program(tmp_path):
  # The control for the test above: its count does see the training call's compilation.
  with _group(tmp_path, False) as (group, fold, images):
    carry = group.placement.put(group.restore())
    call = group.p.engine.compiled_epochs()
    assert _compiles_during(lambda: call(carry, fold, images)) >= 1


def test_an_error_in_the_compiling_thread_is_raised_by_train(tmp_path, monkeypatch):
  def fail(self, *args, **kwargs):
    raise RuntimeError('compiling ahead failed')

  monkeypatch.setattr(loop.EpochsCall, 'precompile', fail)
  with _group(tmp_path, False) as (group, _, _):
    with pytest.raises(RuntimeError, match='compiling ahead failed'):
      group.train()
