"""Single-teacher task distillation, end to end.

Phases (each resumable from its own checkpoints in the workdir):
  1. fine-tune the teacher on the task (hard loss);
  2. compute the frozen teacher's outputs over the training set once (cached),
     while the student is initialised and its step compiled on another thread;
  3. train the student on `α·hard + (1−α)·τ²·soft` against the cached outputs;
  4. evaluate both, measure size and speed, export both as HF checkpoints,
     write summary.json and print a table.
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np

from kdjax import parallel, students, summary, teachers, train
from kdjax.data import sources
from kdjax.data.sources import (during_training_eval_split, final_eval_split,
                                fingerprint, load_task)
from kdjax.data.tokenize import encode
from kdjax.models.bert import count_params
from kdjax.models.hf import export_hf_checkpoint
from kdjax.observe import MetricsLog
from kdjax.summary import format_table  # noqa: F401  (this method's table)

_TEACHER_PHASE, _STUDENT_PHASE = 1, 2


def task_teacher(config, workdir: str, ckpt, spec, train_arrays: dict, data_key: str, mesh,
                 log: MetricsLog, eval_fn_for):
  """The teacher fine-tuned on the task (a resumable phase), and a function that
  returns its logits on `train_arrays`, cached under a key of weights, data and length.

  Returns (model, replicated params, jitted predict, outputs: () -> logits [N, C]).
  """
  # With teacher.store_dir, runs that share it (and the teacher config, data and
  # teacher.seed) share the teacher and its cache.
  store = config.teacher.get('store_dir', '')
  seed = config.teacher.get('seed', config.seed)
  root = workdir
  if store:
    section = {k: v for k, v in config.teacher.to_dict().items() if k != 'store_dir'}
    root = os.path.join(store, spec.name, 'teacher-' + teachers.config_key(
        section, data_key, config.data.max_length, *teachers.dtype_parts(config)))
  t_model, t_params = teachers.build_teacher(ckpt, spec, seed)
  t_predict = train.jit_predict(t_model, mesh)
  if config.teacher.epochs > 0:
    t_params = train.fit_classifier(
        'teacher', _TEACHER_PHASE, t_model, t_params, train_arrays, spec, config.teacher,
        config, mesh, os.path.join(root, 'checkpoints', 'teacher'), log,
        eval_fn_for(t_predict), alpha=1.0, temperature=1.0, seed=seed)
  t_params = parallel.replicate(t_params, mesh)
  cache_key = '-'.join((teachers.params_digest(t_params), data_key,
                        str(config.data.max_length), *teachers.dtype_parts(config)))
  inputs = {k: train_arrays[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')}

  def outputs():
    return teachers.cached_outputs(
        os.path.join(root, 'cache'), cache_key,
        lambda: train.predict_all(t_predict, t_params, inputs, config.eval_batch_size, mesh,
                                  desc='teacher outputs'))
  return t_model, t_params, t_predict, outputs


def run(config, workdir: str) -> dict:
  """Runs all phases; returns (and writes to workdir/summary.json) the summary."""
  started = time.time()
  train.ensure_writable(workdir)
  max_length = config.data.max_length
  teacher_dir, ckpt, tokenizer = teachers.open_teacher(
      config.teacher.checkpoint, max_length, config.seed, config.compute_dtype)

  spec, splits = load_task(config.data)
  dev_split, final_split = during_training_eval_split(splits), final_eval_split(splits)
  for name in set((dev_split, final_split)):
    splits[name] = sources.subsample(splits[name], config.data.max_eval_examples,
                                     config.data.split_seed)
  encoded = {name: {**encode(tokenizer, ex, max_length), 'labels': ex.labels}
             for name, ex in splits.items()}
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
  log = MetricsLog(workdir)
  if jax.process_index() == 0:
    summary.write_json(os.path.join(workdir, 'config.json'), config.to_dict())

  def inputs_of(name):
    return {k: v for k, v in encoded[name].items() if k != 'labels'}

  def eval_fn_for(predict):
    return lambda params: train.evaluate(predict, params, inputs_of(dev_split),
                                         encoded[dev_split]['labels'], spec,
                                         config.eval_batch_size, mesh)

  # 1. Teacher.
  t_model, t_params, t_predict, teacher_outputs = task_teacher(
      config, workdir, ckpt, spec, encoded['train'], fingerprint(splits['train']), mesh, log,
      eval_fn_for)

  # 2. The teacher's outputs over the training set (computed once) while, on
  # another thread, the student is initialised and its step compiled.
  s_config = students.student_config(ckpt.config, config.student)
  train_columns = {**encoded['train'], 'teacher_logits': jax.ShapeDtypeStruct(
      (len(splits['train']), spec.num_outputs), np.float32)}

  def student_start():
    model, params = students.init_student(
        s_config, spec.num_outputs, config.seed, config.student.init, ckpt.config,
        jax.device_get(t_params), config.student.teacher_layers)
    return model, train.classifier_start(
        'student', model, params, train_columns, spec, config.distill, mesh,
        alpha=config.distill.alpha, temperature=config.distill.temperature, compile_ahead=True)
  (s_model, s_start), teacher_logits = train.overlapped(student_start, teacher_outputs)

  # 3. Student.
  s_predict = train.jit_predict(s_model, mesh)
  s_params = train.fit_classifier(
      'student', _STUDENT_PHASE, s_model, None,
      {**encoded['train'], 'teacher_logits': teacher_logits}, spec, config.distill, config,
      mesh, os.path.join(workdir, 'checkpoints', 'student'), log, eval_fn_for(s_predict),
      alpha=config.distill.alpha, temperature=config.distill.temperature, seed=config.seed,
      start=s_start)

  # 4. Report.
  # Which split each figure measures: dev metrics in metrics.jsonl come from
  # `dev_split`, the final ones from `eval_split`; `split_origins` say where
  # each split's rows come from (a file, or a share carved from one).
  result = {'task': spec.name, 'eval_split': final_split, 'dev_split': dev_split,
            'split_origins': {k: v.origin for k, v in splits.items()},
            'data_sizes': {k: len(v) for k, v in splits.items()},
            'teacher_checkpoint': teacher_dir, 'hardware': summary.hardware()}
  for role, model_cfg, model_params, predict in (
      ('teacher', ckpt.config, t_params, t_predict),
      ('student', s_config, s_params, s_predict)):
    result[role] = describe_model(role, model_cfg, model_params, predict,
                                  inputs_of(final_split), encoded[final_split]['labels'],
                                  spec, os.path.join(workdir, 'export', role), teacher_dir,
                                  config, mesh)
    log.write(f'{role}_final', 0,
              {f'{final_split}_{k}': v for k, v in result[role]['metrics'].items()})
  result['comparison'] = compare(result['teacher'], result['student'], spec.metrics[0])
  result['wall_seconds'] = time.time() - started
  log.close()
  if jax.process_index() == 0:
    summary.write_json(os.path.join(workdir, 'summary.json'), result)
  return result


def describe_model(role: str, model_cfg, params, predict, inputs: dict, labels, spec,
                   export_dir: str, tokenizer_dir: str, config, mesh) -> dict:
  """Metrics, size, speed and HF export of one classifier (teacher or student)."""
  metrics = train.evaluate(predict, params, inputs, labels, spec, config.eval_batch_size, mesh)
  host_params = jax.device_get(params)
  if jax.process_index() == 0:
    export_hf_checkpoint(export_dir, model_cfg, host_params['bert'], host_params['classifier'],
                         spec.label_names, tokenizer_dir)
  return {
      'metrics': metrics, 'params': count_params(host_params),
      'disk_bytes': summary.file_size(os.path.join(export_dir, 'model.safetensors')),
      'examples_per_s': summary.inference_speed(predict, params, inputs,
                                                config.eval_batch_size, mesh,
                                                config.speed_repeats),
      'export_dir': export_dir,
      'architecture': {'layers': model_cfg.num_layers, 'hidden': model_cfg.hidden_size,
                       'heads': model_cfg.num_heads, 'intermediate': model_cfg.intermediate_size,
                       'vocab': model_cfg.vocab_size},
  }


def compare(teacher: dict, student: dict, primary: str) -> dict:
  """Kept metric fraction and size / speed ratios of a student against its teacher."""
  return {
      'primary_metric': primary,
      'kept_fraction': student['metrics'][primary] / teacher['metrics'][primary]
      if teacher['metrics'][primary] else float('nan'),
      'param_ratio': teacher['params'] / student['params'],
      'disk_ratio': teacher['disk_bytes'] / max(student['disk_bytes'], 1),
      'speedup': student['examples_per_s'] / teacher['examples_per_s'],
  }
