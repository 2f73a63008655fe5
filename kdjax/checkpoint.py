"""Orbax checkpoints of a train state: periodic, final, resumable.

Orbax writes each step into a temporary directory and renames it when complete,
so a crash mid-save never leaves a checkpoint that `latest_step` would pick.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from kdjax.errors import KdjaxError


def open_manager(directory: str, keep: int = 2) -> ocp.CheckpointManager:
  # Synchronous saves: the state is donated to the next step right after.
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  manager.save(step, args=ocp.args.StandardSave(state), force=True)
  manager.wait_until_finished()


def restore_latest(manager: ocp.CheckpointManager, template: Any) -> Any | None:
  """The latest complete checkpoint shaped (and sharded) like `template`, or None."""
  step = manager.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # orbax raises many types; all mean "unreadable"
    raise KdjaxError(f'checkpoint {manager.directory}/{step} cannot be restored '
                     f'({type(e).__name__}: {str(e)[:200]}); it does not match this config '
                     'or is damaged: use another --workdir or delete that step') from None
