"""uadjax.runtime: the entry points' set-up registers the quicker exit, which freezes what is
left for the collector (the entry points' own outputs are read back by the protocol, report
and predict tests, which run them as subprocesses)."""

import gc

from uadjax import runtime


def test_setup_registers_the_quick_exit_and_it_freezes_what_is_left(monkeypatch):
  registered = []
  monkeypatch.setattr(runtime.atexit, 'register', registered.append)
  monkeypatch.setattr(runtime.atexit, 'unregister', registered.remove)
  monkeypatch.setattr(runtime.compilation_cache, 'setup', lambda: None)
  registered.append(runtime.skip_final_collection)  # an earlier set-up in the same process
  runtime.setup()
  assert registered == [runtime.skip_final_collection]  # once
  before = gc.get_freeze_count()
  try:
    runtime.skip_final_collection()
    assert gc.get_freeze_count() > before
  finally:
    gc.unfreeze()
