"""Training: the train state, the pure steps of each model family's task, and the epoch engine.

Which task trains which model is declared once, in `uadjax.families` (with `make_task`).
"""

from __future__ import annotations

from uadjax.train.state import TrainState, create_train_state, make_optimizer

__all__ = ['TrainState', 'create_train_state', 'make_optimizer']
