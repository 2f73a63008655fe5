"""Phase ids and seed offsets: how one run seed becomes independent streams.

Every phase folds its id into the run's seed (`jax.random.fold_in`) for its
dropout and sampling stream, and its training order is seeded with seed + id,
so two phases of a run never draw the same randoms. The numbers themselves are
arbitrary but part of every result (change one and the figures change), so
they are fixed here, each family in its own range so none can collide.
"""
from __future__ import annotations

def member_seed(teacher_seed: int, k: int) -> int:
  """The seed of teacher k of a set (plain KD's `teacher.checkpoints`, an RL-KD
  teacher set, an MT-DNN-KD ensemble): `teacher.seed + 100 k`, so members differ
  in head init, dropout and data order and member 0 is seeded as a lone teacher."""
  return teacher_seed + 100 * k


# Plain KD (and the mixed-vocabulary task teacher).
TEACHER = 1
STUDENT = 2
KD_PROJECTIONS = 6      # the initial hidden-state projections of a plain-KD student


def kd_teacher(k: int) -> int:
  """Teacher k of plain KD's `teacher.checkpoints`: the first is TEACHER, as a
  single teacher is (its seed is teacher.seed + 100 k)."""
  return TEACHER if k == 0 else 200 + k


# RL-KD: the student's stages are numbered from STUDENT in the order they run
# (warm-up, policy pre-training, joint; or the one 'student' stage of the
# fixed-weight variants).
RL_PRETRAIN_ORDER = 3   # training order of the policy pre-training stage
RL_HELDOUT_ORDER = 4    # order of R3's held-out batches
RL_POLICY_INIT = 5      # the policy's initial weights
RL_TEACHER_ROWS = 6     # added to teacher k's seed: its share of the training rows


def rl_teacher(k: int) -> int:
  """Teacher k of an RL-KD teacher set (its seed is teacher.seed + 100 k)."""
  return 100 + k


# Mixed-vocabulary stages I, II (seeded from mixed.pretrain_seed) and III.
MIXED_STAGE1 = 11
MIXED_STAGE2 = 12
MIXED_STAGE3 = 13


def ensemble_member(task_index: int, k: int) -> int:
  """Member k of the ensemble of the task at `task_index` in MT-DNN-KD."""
  return 1000 + 10 * task_index + k
