"""Single-teacher task distillation, end to end.

Phases (each resumable from its own checkpoints in the workdir):
  1. fine-tune the teacher on the task (hard loss);
  2. compute the frozen teacher's outputs over the training set once (stored),
     while the student is initialised and its step compiled on another thread;
  3. train the student on `α·hard + (1−α)·τ²·soft` against the stored outputs;
  4. evaluate both, measure size and speed, export both as HF checkpoints,
     write summary.json and print a table.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from kdjax import loop, parallel, scaffold, seeds, students, summary, teachers
from kdjax.classifier import best_metric, classifier_start, train_classifier
from kdjax.data import sources
from kdjax.data.sources import (during_training_eval_split, final_eval_split,
                                fingerprint, load_task)
from kdjax.data.tokenize import encode, model_inputs
from kdjax.steps import jit_predict
from kdjax.summary import format_table  # noqa: F401  (this method's table)


def task_teacher(run: scaffold.Run, spec, train_arrays: dict, data_key: str, eval_fn_for):
  """The teacher fine-tuned on the task (a resumable phase), and a function that
  returns its logits on a split from the teacher-output store.

  Returns (model, replicated params, jitted predict, outputs_on), where
  `outputs_on(arrays, fingerprint) -> logits [N, C]` computes them once per
  split (keyed by its `fingerprint`) and reads them from the store after that.
  """
  config, mesh, lengths = run.config, run.mesh, run.lengths
  # What the teacher's training and outputs depend on besides the data.
  shape = (config.data.max_length, lengths, *teachers.dtype_parts(config))
  # With teacher.store_dir, runs that share it (and the teacher config, data and
  # teacher.seed) share the fine-tuned teacher and its outputs.
  root = run.workdir
  if config.teacher.store_dir:
    root = os.path.join(config.teacher.store_dir, spec.name, 'teacher-' + teachers.config_key(
        teachers.settings(config.teacher), data_key, *shape))
  t_model, t_params = teachers.build_teacher(run.teacher.checkpoint, spec, config.teacher.seed)
  t_predict = jit_predict(t_model, mesh)
  if config.teacher.epochs > 0:
    start = classifier_start(t_model, t_params, train_arrays, spec, config.teacher, mesh,
                             name='teacher', lengths=lengths)
    t_params = train_classifier(run, 'teacher', start, train_arrays, config.teacher,
                                eval_fn_for(t_predict), phase_id=seeds.TEACHER,
                                seed=config.teacher.seed, lengths=lengths,
                                best_metric=best_metric(config.teacher, spec),
                                checkpoint_dir=os.path.join(root, 'checkpoints', 'teacher'))
  t_params = parallel.replicate(t_params, mesh)
  weights = teachers.params_digest(t_params)

  def outputs_on(arrays: dict, fingerprint: str) -> np.ndarray:
    key = teachers.config_key(weights, fingerprint, *shape)
    return teachers.stored_outputs(
        os.path.join(root, 'cache'), 'teacher_outputs', key,
        lambda: {'logits': loop.predict_all(t_predict, t_params, model_inputs(arrays),
                                            config.eval_batch_size, mesh,
                                            desc='teacher outputs', lengths=lengths)}
    )['logits']
  return t_model, t_params, t_predict, outputs_on


def run(config, workdir: str) -> dict:
  """Runs all phases; returns (and writes to workdir/summary.json) the summary."""
  r = scaffold.begin(config, workdir)
  ckpt, mesh = r.teacher.checkpoint, r.mesh
  spec, splits = load_task(config.data)
  dev_split, final_split = during_training_eval_split(splits), final_eval_split(splits)
  for name in set((dev_split, final_split)):
    splits[name] = sources.subsample(splits[name], config.data.max_eval_examples,
                                     config.data.split_seed)
  encoded = {name: {**encode(r.teacher.tokenizer, ex, config.data.max_length),
                    'labels': ex.labels} for name, ex in splits.items()}
  log = r.open_log()

  def eval_fn_for(predict):
    return lambda params: loop.evaluate(predict, params, model_inputs(encoded[dev_split]),
                                        encoded[dev_split]['labels'], spec,
                                        config.eval_batch_size, mesh, r.lengths)

  # 1. Teacher.
  t_model, t_params, t_predict, teacher_outputs_on = task_teacher(
      r, spec, encoded['train'], fingerprint(splits['train']), eval_fn_for)

  # 2. The teacher's outputs over the training set (computed once) while, on
  # another thread, the student is initialised and its step compiled.
  s_config = students.student_config(ckpt.config, config.student)
  train_columns = {**encoded['train'], 'teacher_logits': jax.ShapeDtypeStruct(
      (len(splits['train']), spec.num_outputs), np.float32)}

  def student_start():
    model, params = students.init_student(
        s_config, spec.num_outputs, config.seed, config.student.init, ckpt.config,
        jax.device_get(t_params), config.student.teacher_layers, config.student.layer_choice)
    return model, classifier_start(
        model, params, train_columns, spec, config.distill, mesh, name='student',
        alpha=config.distill.alpha, temperature=config.distill.temperature,
        compile_ahead=True, lengths=r.lengths)
  (s_model, s_start), teacher_logits = loop.overlapped(
      student_start, lambda: teacher_outputs_on(encoded['train'], fingerprint(splits['train'])))

  # 3. Student.
  s_predict = jit_predict(s_model, mesh)
  s_params = train_classifier(
      r, 'student', s_start, {**encoded['train'], 'teacher_logits': teacher_logits},
      config.distill, eval_fn_for(s_predict), phase_id=seeds.STUDENT, seed=config.seed,
      best_metric=best_metric(config.distill, spec), lengths=r.lengths)

  # 4. Report.
  # Which split each figure measures: dev metrics in metrics.jsonl come from
  # `dev_split`, the final ones from `eval_split`; `split_origins` say where
  # each split's rows come from (a file, or a share carved from one).
  result = {'task': spec.name, 'eval_split': final_split, 'dev_split': dev_split,
            'split_origins': {k: v.origin for k, v in splits.items()},
            'data_sizes': {k: len(v) for k, v in splits.items()}}
  final = encoded[final_split]
  for role, model_cfg, model_params, predict, outputs in (
      # The teacher's outputs on the final split come from the store: a rerun,
      # or another student of the same teacher, does not evaluate it again.
      ('teacher', ckpt.config, t_params, t_predict,
       teacher_outputs_on(final, fingerprint(splits[final_split]))),
      ('student', s_config, s_params, s_predict, None)):
    result[role] = summary.describe_model(
        model_cfg, model_params, predict, model_inputs(final), final['labels'], spec,
        r.path('export', role), r.teacher.dir, config, mesh, r.lengths, outputs)
    log.write(f'{role}_final', 0,
              {f'{final_split}_{k}': v for k, v in result[role]['metrics'].items()})
  result['comparison'] = summary.compare(result['teacher'], result['student'],
                                         spec.metrics[0])
  return r.finish(result)
