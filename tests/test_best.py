"""Best checkpoint: a phase with `keep_best` ends with the params of its best dev
evaluation (kept on disk, so a resumed run keeps them too) and says which in
summary.json."""
import json
import os

import jax
import numpy as np

from kdjax import checkpoint
from kdjax.methods.kd import pipeline as kd
from kdjax.models.hf import load_hf_checkpoint
from tests.test_e2e import tiny_config


def _word_table(tree) -> np.ndarray:
  return np.asarray(tree['bert']['embeddings']['word_embeddings']['embedding'])


def _kept_params(directory: str, step: int):
  manager = checkpoint.open_manager(directory)
  try:
    return jax.device_get(manager.restore(step)['params'])
  finally:
    manager.close()


def test_the_student_ends_with_its_best_dev_evaluation(tmp_path, tiny_teacher_dir):
  config = tiny_config(tiny_teacher_dir)
  config.eval_every = 2  # several evaluations to choose from
  workdir = str(tmp_path / 'run')
  summary = kd.run(config, workdir)

  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  dev = [(l['step'], l['dev_accuracy']) for l in lines
         if l['phase'] == 'student' and 'dev_accuracy' in l]
  best_value = max(v for _, v in dev)
  best_step = next(s for s, v in dev if v == best_value)  # ties: the earliest
  assert summary['best_checkpoints']['student'] == {
      'step': best_step, 'metric': 'accuracy', 'value': best_value}
  assert 'teacher' not in summary['best_checkpoints']  # teacher.keep_best is off

  # The exported student is the kept one, not the last step's (when they differ).
  exported = _word_table({'bert': load_hf_checkpoint(
      os.path.join(workdir, 'export', 'student')).encoder_params})
  best = _word_table(_kept_params(os.path.join(workdir, 'checkpoints', 'student-best'),
                                  best_step))
  np.testing.assert_array_equal(exported, best)
  last_step = dev[-1][0]
  if best_step != last_step:
    last = _word_table(_kept_params(os.path.join(workdir, 'checkpoints', 'student'),
                                    last_step))
    assert not np.array_equal(exported, last)

  # Off: the last step's params, and no record.
  config.distill.keep_best = False
  plain = kd.run(config, str(tmp_path / 'last'))
  assert 'best_checkpoints' not in plain
