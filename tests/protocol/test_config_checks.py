"""The config check's model trace is kept when it passes (`uadjax.config`, beside the compilation
cache) and done again for another config, other code, a failure, or with the cache off."""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.helpers import TINY_CAE, make_config
from uadjax import config as config_lib
from uadjax import families
from uadjax.run import compilation_cache


@pytest.fixture
def traces(monkeypatch):
  """Counts the config check's model traces (`model_error` calls)."""
  calls = []
  real = config_lib.model_error

  def counted(config, size):
    calls.append(size)
    return real(config, size)

  monkeypatch.setattr(config_lib, 'model_error', counted)
  return calls


def _checks() -> list[str]:
  folder = compilation_cache.checks_dir()
  return sorted(os.listdir(folder)) if folder and os.path.isdir(folder) else []


def test_a_check_that_passed_is_not_traced_again_for_the_same_config(tmp_path, monkeypatch, traces):
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / 'cache'))
  config = make_config(TINY_CAE)
  config_lib.validate(config)
  config_lib.validate(config)
  assert len(traces) == 1 and len(_checks()) == 1
  config.train.epochs += config.cv.val_every  # another config: traced, and kept too
  config_lib.validate(config)
  assert len(traces) == 2 and len(_checks()) == 2


def test_a_failing_check_is_never_kept(tmp_path, monkeypatch, traces):
  monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / 'cache'))
  config = make_config(TINY_CAE)
  config.data.image_size = 30  # the CAE halves it five times
  for _ in range(2):
    with pytest.raises(config_lib.ConfigError, match='cannot take 30x30'):
      config_lib.validate(config)
  assert traces.count(30) == 2 and _checks() == []


def test_with_the_cache_off_every_check_traces(tmp_path, monkeypatch, traces):
  monkeypatch.setenv(compilation_cache.ENV, 'off')
  config = make_config(TINY_CAE)
  config_lib.validate(config)
  config_lib.validate(config)
  assert len(traces) == 2 and compilation_cache.checks_dir() is None


def test_the_key_follows_the_code_of_a_family_from_outside_uadjax(tmp_path, monkeypatch):
  source = tmp_path / 'outside_model.py'
  source.write_text('from uadjax.families.cae import CAE\n\n\nclass OutsideCAE(CAE):\n  pass\n')
  spec = importlib.util.spec_from_file_location('outside_model', source)
  module = importlib.util.module_from_spec(spec)
  monkeypatch.setitem(__import__('sys').modules, 'outside_model', module)
  spec.loader.exec_module(module)
  cae = families.FAMILIES['cae']
  monkeypatch.setitem(
    families.FAMILIES, 'outside', families.Family('outside', 'Outside', module.OutsideCAE, cae.task)
  )
  config = make_config(TINY_CAE)
  config.model_name = 'outside'
  key = config_lib.check_key(config, 32)
  assert config_lib.check_key(config, 32) == key
  assert config_lib.check_key(config, 64) != key
  source.write_text(source.read_text() + '\n# edited\n')
  assert config_lib.check_key(config, 32) != key
