"""Task distillation from one teacher (or several), end to end.

Phases (each resumable from its own checkpoints in the workdir):
  1. fine-tune each teacher on the task (hard loss);
  2. compute the frozen teachers' outputs over the training set once (stored),
     while the student is initialised and its step compiled on another thread;
  3. train the student on `α·hard + (1−α)·τ²·soft` against the stored outputs
     (several teachers: their soft losses weighted by `distill.teacher_weights`;
     with `distill.augment_copies`, also on perturbed copies of the training
     set that the teachers label, kdjax/data/augment.py),
     plus, when `distill.hidden_weight` or `distill.attention_weight` is set,
     layer-wise losses to the first teacher, which then runs inside the step;
  4. evaluate, measure size and speed, export the teachers and the student as
     HF checkpoints (without the projections), write summary.json and print a table.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from kdjax import loop, parallel, scaffold, seeds, students, summary, teachers
from kdjax.classifier import best_metric, classifier_start, train_classifier
from kdjax.data import augment, sources
from kdjax.data.sources import (during_training_eval_split, final_eval_split,
                                fingerprint, load_task)
from kdjax.data.tokenize import encode, model_inputs
from kdjax.errors import KdjaxError
from kdjax.methods.kd import pieces
from kdjax.models.bert import count_params
from kdjax.models.hf import HFCheckpoint
from kdjax.steps import jit_predict
from kdjax.summary import format_table  # noqa: F401  (this method's table)


def teacher_name(k: int) -> str:
  """Teacher k's phase, checkpoint and export name ('teacher' for the first)."""
  return 'teacher' if k == 0 else f'teacher_{k}'


def open_more_teachers(run: scaffold.Run) -> list[HFCheckpoint]:
  """The checkpoints of `teacher.checkpoints[1:]`, checked before any work:
  each must read the same token ids as the run's teacher (the first)."""
  config = run.config
  opened = []
  for k, path in enumerate(teachers.checkpoints_of(config.teacher)[1:], start=1):
    directory, ckpt, tokenizer = teachers.open_teacher(
        path, config.data.max_length, seeds.member_seed(config.teacher.seed, k), config.compute_dtype,
        role=f'teacher.checkpoints[{k}]')
    if tokenizer.get_vocab() != run.teacher.tokenizer.get_vocab():
      raise KdjaxError(f'teacher.checkpoints[{k}] ({directory}) has another vocabulary than '
                       f'teacher.checkpoints[0] ({run.teacher.dir}); every teacher must read '
                       'the same token ids')
    opened.append(ckpt)
  return opened


def teacher_weights(section, num_teachers: int) -> tuple[float, ...] | None:
  """The teachers' fixed weights in the soft loss, normalised to sum 1 (None: one
  teacher, whose loss is plain KD). `distill.teacher_weights=()`: equal weights."""
  given = tuple(float(w) for w in section.teacher_weights)
  if given and len(given) != num_teachers:
    raise KdjaxError(f'distill.teacher_weights {given} must give one weight per teacher '
                     f'({num_teachers})')
  if any(not w >= 0 for w in given) or (given and sum(given) <= 0):
    raise KdjaxError(f'distill.teacher_weights {given} must be >= 0 and not all 0')
  if num_teachers == 1:
    return None
  given = given or (1.0,) * num_teachers
  return tuple(w / sum(given) for w in given)


def layer_targets(section, student_config, teacher_config) -> pieces.LayerTargets:
  """`distill.{hidden_weight, attention_weight, layer_map}` checked against the
  two architectures (the layer map defaults to evenly spaced teacher layers)."""
  return pieces.LayerTargets(
      students.checked_layer_map(section.layer_map, student_config.num_layers,
                                 teacher_config.num_layers, 'distill.layer_map'),
      float(section.hidden_weight), float(section.attention_weight))


def task_teacher(run: scaffold.Run, spec, train_arrays: dict, data_key: str, eval_fn_for,
                 k: int = 0, checkpoint: HFCheckpoint | None = None):
  """Teacher k (default the run's teacher) fine-tuned on the task (a resumable
  phase), and a function that returns its logits on a split from the
  teacher-output store.

  Returns (model, replicated params, jitted predict, outputs_on), where
  `outputs_on(arrays, fingerprint) -> logits [N, C]` computes them once per
  split (keyed by its `fingerprint`) and reads them from the store after that.
  """
  config, mesh, lengths = run.config, run.mesh, run.lengths
  checkpoint = checkpoint or run.teacher.checkpoint
  name, seed = teacher_name(k), seeds.member_seed(config.teacher.seed, k)
  # What the teacher's training and outputs depend on besides the data.
  shape = (config.data.max_length, lengths, *teachers.dtype_parts(config))
  # With teacher.store_dir, runs that share it (and the teacher config, data and
  # teacher.seed) share the fine-tuned teacher and its outputs.
  root = run.workdir
  if config.teacher.store_dir:
    own = {**teachers.settings(config.teacher),
           'checkpoint': teachers.checkpoints_of(config.teacher)[k], 'seed': seed}
    root = os.path.join(config.teacher.store_dir, spec.name,
                        'teacher-' + teachers.config_key(own, data_key, *shape))
  t_model, t_params = teachers.build_teacher(checkpoint, spec, seed)
  t_predict = jit_predict(t_model, mesh)
  if config.teacher.epochs > 0:
    start = classifier_start(t_model, t_params, train_arrays, spec, config.teacher, mesh,
                             name=name, lengths=lengths)
    t_params = train_classifier(run, name, start, train_arrays, config.teacher,
                                eval_fn_for(t_predict), phase_id=seeds.kd_teacher(k),
                                seed=seed, lengths=lengths,
                                best_metric=best_metric(config.teacher, spec),
                                checkpoint_dir=os.path.join(root, 'checkpoints', name))
  t_params = parallel.replicate(t_params, mesh)
  weights = teachers.params_digest(t_params)

  def outputs_on(arrays: dict, fingerprint: str) -> np.ndarray:
    key = teachers.config_key(weights, fingerprint, *shape)
    return teachers.stored_outputs(
        os.path.join(root, 'cache'), 'teacher_outputs', key,
        lambda: {'logits': loop.predict_all(t_predict, t_params, model_inputs(arrays),
                                            config.eval_batch_size, mesh,
                                            desc=f'{name} outputs', lengths=lengths)}
    )['logits']
  return t_model, t_params, t_predict, outputs_on


def run(config, workdir: str) -> dict:
  """Runs all phases; returns (and writes to workdir/summary.json) the summary."""
  perturbation = augment.perturbation_of(config.distill)  # checked before any work
  r = scaffold.begin(config, workdir)
  ckpt, mesh = r.teacher.checkpoint, r.mesh
  checkpoints = [ckpt] + open_more_teachers(r)
  weights = teacher_weights(config.distill, len(checkpoints))
  s_config = students.student_config(ckpt.config, config.student)
  layers = layer_targets(config.distill, s_config, ckpt.config)
  spec, splits = load_task(config.data)
  dev_split, final_split = during_training_eval_split(splits), final_eval_split(splits)
  for name in set((dev_split, final_split)):
    splits[name] = sources.subsample(splits[name], config.data.max_eval_examples,
                                     config.data.split_seed)
  encoded = {name: {**encode(r.teacher.tokenizer, ex, config.data.max_length),
                    'labels': ex.labels} for name, ex in splits.items()}
  log = r.open_log()

  def eval_fn_for(predict):
    # Students carry projections beside the classifier while they train.
    return lambda params: loop.evaluate(predict, pieces.classifier_params(params),
                                        model_inputs(encoded[dev_split]),
                                        encoded[dev_split]['labels'], spec,
                                        config.eval_batch_size, mesh, r.lengths)

  # 1. Teachers.
  train_key = fingerprint(splits['train'])
  with r.timed('teachers'):
    tutors = [task_teacher(r, spec, encoded['train'], train_key, eval_fn_for, k, c)
              for k, c in enumerate(checkpoints)]
  t_model, t_params = tutors[0][:2]

  # 2. The teachers' outputs over the training set (and its transfer set; both
  # computed once) while, on another thread, the student is initialised and
  # its step compiled.
  transfer = (augment.encoded_transfer_set(
      splits['train'], perturbation, config.data.split_seed, r.teacher.tokenizer,
      r.teacher.tokenizer, config.data.max_length) if perturbation.copies else None)
  inputs = dict(encoded['train'])
  if transfer is not None:  # placeholder labels until the teachers answer
    inputs = augment.with_transfer_set(inputs, {**transfer.student_arrays,
                                                'labels': transfer.examples.labels})
  rows = len(inputs['labels'])
  logits_shape = ((rows, spec.num_outputs) if weights is None
                  else (rows, len(tutors), spec.num_outputs))
  train_columns = {**inputs, 'teacher_logits': jax.ShapeDtypeStruct(logits_shape, np.float32)}

  @r.timed('student_start')  # on another thread, during the teacher pass
  def student_start():
    model, params = students.init_student(
        s_config, spec.num_outputs, config.seed, config.student.init, ckpt.config,
        jax.device_get(t_params), config.student.teacher_layers, config.student.layer_choice)
    if layers.hidden_weight > 0 and s_config.hidden_size != ckpt.config.hidden_size:
      params['projection'] = jax.tree.map(np.asarray, pieces.init_projections(
          config.seed + seeds.KD_PROJECTIONS, s_config.num_layers, s_config.hidden_size,
          ckpt.config.hidden_size))
    step = pieces.distill_step(
        model, alpha=config.distill.alpha, temperature=config.distill.temperature,
        regression=spec.regression, teacher_weights=weights, teacher=t_model, layers=layers)
    return model, classifier_start(
        model, params, train_columns, spec, config.distill, mesh, name='student',
        compile_ahead=True, lengths=r.lengths, step=step,
        frozen=t_params if layers.on else None)

  def teachers_on(arrays: dict, key: str) -> np.ndarray:
    logits = [outputs_on(arrays, key) for *_, outputs_on in tutors]
    return logits[0] if weights is None else np.stack(logits, axis=1)

  @r.timed('teacher_outputs')  # read from the store when computed before
  def train_arrays():
    arrays = {**encoded['train'], 'teacher_logits': teachers_on(encoded['train'], train_key)}
    if transfer is None:
      return arrays
    return augment.with_transfer_set(arrays, augment.labelled(
        transfer, teachers_on(transfer.teacher_arrays, transfer.key), spec.regression, weights))
  (s_model, s_start), student_arrays = loop.overlapped(student_start, train_arrays)

  # 3. Student.
  s_predict = jit_predict(s_model, mesh)
  with r.timed('student'):
    s_params = train_classifier(
        r, 'student', s_start, student_arrays, config.distill, eval_fn_for(s_predict),
        phase_id=seeds.STUDENT, seed=config.seed,
        best_metric=best_metric(config.distill, spec), lengths=r.lengths)

  # 4. Report.
  # Which split each figure measures: dev metrics in metrics.jsonl come from
  # `dev_split`, the final ones from `eval_split`; `split_origins` say where
  # each split's rows come from (a file, or a share carved from one).
  result = {'task': spec.name, 'eval_split': final_split, 'dev_split': dev_split,
            'split_origins': {k: v.origin for k, v in splits.items()},
            'data_sizes': {k: len(v) for k, v in splits.items()},
            'transfer_set': 0 if transfer is None else len(transfer.examples)}
  if layers.on:
    result['layer_losses'] = {
        'hidden_weight': layers.hidden_weight, 'attention_weight': layers.attention_weight,
        'layer_map': list(layers.layer_map),
        # trained with the student, not part of it (nor of its export)
        'projection_params': count_params(s_params.get('projection', {}))}
  final = encoded[final_split]
  described = []
  for k, (model, params, predict, outputs_on) in enumerate(tutors):
    # The teacher's outputs on the final split come from the store: a rerun,
    # or another student of the same teacher, does not evaluate it again.
    with r.timed('teacher_final_outputs'):
      outputs = outputs_on(final, fingerprint(splits[final_split]))
    described.append((teacher_name(k), checkpoints[k].config, params, predict, outputs))
  described.append(('student', s_config, pieces.classifier_params(s_params), s_predict, None))
  for role, model_cfg, model_params, predict, outputs in described:
    with r.timed(f'{role}_report'):  # evaluation (student), speed test, export
      result[role] = summary.describe_model(
          model_cfg, model_params, predict, model_inputs(final), final['labels'], spec,
          r.path('export', role), r.teacher.dir, config, mesh, r.lengths, outputs)
    log.write(f'{role}_final', 0,
              {f'{final_split}_{k}': v for k, v in result[role]['metrics'].items()})
  if weights is not None:
    result['teacher_weights'] = list(weights)
  result['comparison'] = summary.compare(result['teacher'], result['student'],
                                         spec.metrics[0])
  return r.finish(result)
