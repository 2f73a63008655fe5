"""MT-DNN-KD end to end: per-task teacher ensembles -> one multi-task student.

  1. per task, K teachers (the pretrained encoder fine-tuned with different
     seeds and dropout rates), each a resumable phase;
  2. their averaged probabilities (scores for regression) over the training
     set, computed once and stored under a key of teacher config and data in
     `teacher.store_dir`, so every student run reuses them;
  3. one shared-encoder student with a head per task, batches drawn one task
     at a time ∝ task size, loss `α·hard + (1−α)·soft` (hard only for tasks
     without teachers; `distill.alpha=1` trains on gold labels alone, and then
     no teacher is trained);
  4. per-task dev metrics of every teacher, the ensemble and the student, and
     the GLUE average, in summary.json and a table.
"""
from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from kdjax import loop, parallel, scaffold, seeds, students, teachers
from kdjax.classifier import best_metric, classifier_start, train_classifier
from kdjax.data import sources
from kdjax.data.batching import batches_per_epoch
from kdjax.data.tasks import TaskSpec, get_task
from kdjax.data.tokenize import encode, model_inputs
from kdjax.errors import KdjaxError
from kdjax.methods.mtdnn_kd import pieces
from kdjax.metrics import compute_metrics, constant_baseline, glue_average, glue_task_score
from kdjax.models.multitask import MultiTaskModel
from kdjax.steps import jit_predict, phase_optimizer, start_phase
from kdjax.summary import align


@dataclasses.dataclass
class TaskData:
  spec: TaskSpec
  train: dict[str, np.ndarray]   # encoded inputs + float32 labels
  dev: dict[str, np.ndarray]
  fingerprint: str


def load_tasks(data, tokenizer) -> dict[str, TaskData]:
  """Encodes every task of `data.tasks`; dev-only tasks (e.g. QNLI here) are split."""
  # Named tasks must exist (a typo must not silently subsample); ones not in
  # data.tasks are allowed, so the default keeps working for a subset of tasks.
  full = set()
  for name in data.full_train_tasks:
    try:
      full.add(get_task(name).name)
    except KdjaxError as e:
      raise KdjaxError(f'data.full_train_tasks: {e}') from None
  tasks = {}
  for name in data.tasks:
    spec = get_task(name)
    if spec.name not in sources.GLUE_DIRS:
      raise KdjaxError(f'MT-DNN-KD runs GLUE tasks; {name!r} is not one')
    splits = (sources.glue_dir_splits(spec.name, data.glue_dir, data.dev_only_train_fraction,
                                      data.split_seed)
              if data.source == 'glue_dir' else sources.load_glue_hub(spec.name))
    limit = 0 if spec.name in full else data.max_train_examples
    train_ex = sources.subsample(splits['train'], limit, data.split_seed)
    dev_ex = sources.subsample(splits['dev'], data.max_eval_examples, data.split_seed)
    encoded = {}
    for split, ex in (('train', train_ex), ('dev', dev_ex)):
      encoded[split] = {**encode(tokenizer, ex, data.max_length),
                        'labels': ex.labels.astype(np.float32)}
    tasks[spec.name] = TaskData(spec, encoded['train'], encoded['dev'],
                                sources.fingerprint(train_ex) + sources.fingerprint(dev_ex))
  return tasks


def _class_labels(arrays, spec):
  return arrays['labels'] if spec.regression else arrays['labels'].astype(np.int32)


# ------------------------------------------------------------------ teachers

def prepare_teachers(run: scaffold.Run, tasks: dict[str, TaskData], store_dir: str
                     ) -> dict[str, dict]:
  """Trains (or reuses) each task's teacher ensemble; returns per task
  `member_train` [K, N, C] (the members' logits or scores, which soften into
  soft targets at the student's temperature), `member_dev` [K, N, C] and
  `ensemble_dev` [N, C]."""
  config = run.config
  wanted = tuple(config.teacher.tasks) or tuple(tasks)
  result = {}
  for task_index, name in enumerate(wanted):
    if name not in tasks:
      raise KdjaxError(f'teacher.tasks names {name!r}, which is not in data.tasks')
    task = tasks[name]
    key = teachers.config_key(teachers.settings(config.teacher), run.teacher.dir,
                              task.fingerprint, config.data.max_length, run.lengths,
                              *teachers.dtype_parts(config))
    task_dir = os.path.join(store_dir, name)
    result[name] = teachers.stored_outputs(
        task_dir, 'ensemble', key,
        lambda: _train_ensemble(run, task, task_index, os.path.join(task_dir, 'members-' + key)))
  return result


def _train_ensemble(run: scaffold.Run, task: TaskData, task_index: int, members_dir: str
                    ) -> dict[str, np.ndarray]:
  """Fine-tunes the members of one task's ensemble (each a resumable phase under
  `members_dir`) and returns the ensemble's soft targets and dev outputs."""
  config, mesh, spec, lengths = run.config, run.mesh, task.spec, run.lengths
  ckpt = run.teacher.checkpoint
  train_arrays = {**task.train, 'labels': _class_labels(task.train, spec)}
  dev_labels = _class_labels(task.dev, spec)
  train_outputs, dev_outputs = [], []
  for k, dropout in enumerate(config.teacher.member_dropouts):
    member_cfg = dataclasses.replace(ckpt.config, hidden_dropout=dropout,
                                     attention_dropout=dropout)
    model, params = teachers.build_teacher(dataclasses.replace(ckpt, config=member_cfg),
                                           spec, seeds.member_seed(config.teacher.seed, k))
    predict = jit_predict(model, mesh)
    eval_fn = lambda p: loop.evaluate(predict, p, model_inputs(task.dev), dev_labels, spec,
                                      config.eval_batch_size, mesh, lengths)
    name = f'teacher_{spec.name}_{k}'
    start = classifier_start(model, params, train_arrays, spec, config.teacher, mesh, name=name,
                             lengths=lengths)
    params = train_classifier(run, name, start, train_arrays, config.teacher, eval_fn,
                              phase_id=seeds.ensemble_member(task_index, k),
                              seed=config.teacher.seed,
                              best_metric=best_metric(config.teacher, spec), lengths=lengths,
                              checkpoint_dir=os.path.join(members_dir, f'member_{k}'))
    train_outputs.append(loop.predict_all(predict, params, model_inputs(task.train),
                                          config.eval_batch_size, mesh,
                                          desc=f'{spec.name} teacher {k} outputs',
                                          lengths=lengths))
    dev_outputs.append(loop.predict_all(predict, params, model_inputs(task.dev),
                                        config.eval_batch_size, mesh, lengths=lengths))
  return {'member_train': np.stack(train_outputs), 'member_dev': np.stack(dev_outputs),
          'ensemble_dev': pieces.ensemble_soft_targets(dev_outputs, spec.regression)}


def teacher_report(tasks: dict[str, TaskData], ensembles: dict[str, dict]) -> dict:
  """Dev metrics of every ensemble member and of the ensemble, per task."""
  report = {}
  for name, stored in ensembles.items():
    spec = tasks[name].spec
    labels = _class_labels(tasks[name].dev, spec)
    members = [compute_metrics(spec.metrics, out, labels, spec.regression)
               for out in stored['member_dev']]
    ens = pieces.ensemble_predictions(stored['ensemble_dev'], spec.regression)
    report[name] = {'members': members,
                    'ensemble': compute_metrics(spec.metrics, ens, labels, spec.regression)}
  return report


# ------------------------------------------------------------------ student

def predict_multitask(params, batch, *, model):
  return model.apply({'params': params}, batch['input_ids'], batch['token_type_ids'],
                     batch['attention_mask'], batch['task_ids'])['logits']


def student_arrays(tasks: dict[str, TaskData], ensembles: dict[str, dict] | None,
                   width: int, temperature: float) -> tuple[dict[str, np.ndarray], ...]:
  """Per task: training inputs, labels, soft targets (the members' probabilities
  softened by `temperature` and averaged, padded to `width`) and has_soft flags."""
  out = []
  for name, task in tasks.items():
    n = len(task.train['labels'])
    soft = np.zeros((n, width), np.float32)
    has_soft = np.zeros(n, np.float32)
    if ensembles is not None and name in ensembles:
      targets = pieces.ensemble_soft_targets(ensembles[name]['member_train'],
                                             task.spec.regression, temperature)
      soft[:, :targets.shape[1]] = targets
      has_soft[:] = 1.0
    out.append({**task.train, 'soft_targets': soft, 'has_soft': has_soft})
  return tuple(out)


def evaluate_tasks(predict, params, tasks: dict[str, TaskData], batch_size, mesh,
                   lengths: tuple[int, ...] = ()) -> dict:
  result = {}
  for t, (name, task) in enumerate(tasks.items()):
    arrays = {**model_inputs(task.dev), 'task_ids': np.full(len(task.dev['labels']), t,
                                                            np.int32)}
    outputs = loop.predict_all(predict, params, arrays, batch_size, mesh, lengths=lengths)
    spec = task.spec
    result[name] = compute_metrics(spec.metrics, outputs[:, :spec.num_outputs],
                                   _class_labels(task.dev, spec), spec.regression)
  return result


def train_student(run: scaffold.Run, tasks: dict[str, TaskData],
                  ensembles: dict[str, dict] | None) -> dict:
  """Trains the multi-task student; returns its per-task dev metrics."""
  config, mesh, ckpt = run.config, run.mesh, run.teacher.checkpoint
  table = pieces.TaskTable(tuple(t.spec.num_outputs for t in tasks.values()),
                           tuple(t.spec.regression for t in tasks.values()))
  s_config = students.student_config(ckpt.config, config.student)
  model = MultiTaskModel(s_config, table.num_classes)
  ids = np.zeros((1, 8), np.int32)
  params = jax.device_get(model.init(jax.random.PRNGKey(config.seed), ids, ids,
                                     np.ones_like(ids), np.zeros(1, np.int32))['params'])
  params['bert'] = students.initialise_encoder(params['bert'], s_config, config.student.init,
                                               ckpt.config, ckpt.encoder_params,
                                               config.student.teacher_layers,
                                               config.student.layer_choice)
  arrays = student_arrays(tasks, ensembles, table.width, config.distill.temperature)
  d, lengths = config.distill, run.lengths
  try:
    total = max(1, int(round(d.epochs * sum(
        batches_per_epoch(len(a['labels']), d.batch_size, bucketed=bool(lengths))
        for a in arrays))))
    schedule = pieces.task_schedule([len(a['labels']) for a in arrays], d.batch_size, total,
                                    config.seed)
  except ValueError as e:
    raise KdjaxError(f'{e}; lower distill.batch_size') from None
  batches = pieces.MultiTaskBatches(arrays, schedule, d.batch_size, config.seed,
                                    jax.process_index(), jax.process_count(), lengths)
  predict = jit_predict(model, mesh, predict_multitask)

  def eval_fn(p):
    per_task = evaluate_tasks(predict, p, tasks, config.eval_batch_size, mesh, lengths)
    flat = {f'{t}_{m}': v for t, ms in per_task.items() for m, v in ms.items()}
    flat['glue_average'] = glue_average(per_task)
    return flat

  parallel.check_batch_size(d.batch_size, mesh, 'student batch_size')
  step = pieces.multitask_step(model, table, alpha=d.alpha if ensembles is not None else 1.0,
                               temperature=d.temperature)
  start = start_phase(params, step, phase_optimizer(d, total), mesh)
  state = run.train('student', start, batches, total, eval_fn, phase_id=seeds.STUDENT,
                    seed=config.seed, best_metric='glue_average' if d.keep_best else None)
  return evaluate_tasks(predict, state['params'], tasks, config.eval_batch_size, mesh, lengths)


# ------------------------------------------------------------------ run

def uses_kd(config) -> bool:
  """Whether the student learns from teachers (`distill.alpha` < 1)."""
  return config.distill.alpha < 1.0


def run(config, workdir: str) -> dict:
  r = scaffold.begin(config, workdir, teacher_seed=config.teacher.seed)
  if len(config.teacher.member_dropouts) < 1:
    raise KdjaxError('teacher.member_dropouts must list one dropout rate per ensemble member')
  tasks = load_tasks(config.data, r.teacher.tokenizer)
  log = r.open_log()
  store_dir = config.teacher.store_dir or r.path('teachers')
  ensembles = prepare_teachers(r, tasks, store_dir) if uses_kd(config) else None
  student = train_student(r, tasks, ensembles)
  majority = {name: constant_baseline(t.spec.metrics, t.train['labels'],
                                      _class_labels(t.dev, t.spec), t.spec.regression,
                                      t.spec.num_outputs)
              for name, t in tasks.items()}
  result = {
      'method': 'mtdnn_kd', 'use_kd': uses_kd(config),
      'tasks': {name: {'train_examples': len(t.train['labels']),
                       'dev_examples': len(t.dev['labels']),
                       'student': student[name],
                       'student_glue_score': glue_task_score(name, student[name]),
                       'majority': majority[name]}
                for name, t in tasks.items()},
      'student_glue_average': glue_average(student),
      'majority_glue_average': glue_average(majority),
  }
  if ensembles is not None:
    for name, report in teacher_report(tasks, ensembles).items():
      result['tasks'][name].update(teachers=report['members'], ensemble=report['ensemble'])
  log.write('student_final', 0, {'glue_average': result['student_glue_average']})
  return r.finish(result)


def format_table(summary: dict) -> str:
  rows = [('task', 'metric', 'majority', 'ensemble', 'student')]
  for name, t in summary['tasks'].items():
    for metric, value in t['student'].items():
      ens = t.get('ensemble', {}).get(metric)
      rows.append((name, metric, f"{t['majority'][metric]:.4f}",
                   '-' if ens is None else f'{ens:.4f}', f'{value:.4f}'))
  rows.append(('GLUE avg', '', f"{summary['majority_glue_average']:.2f}", '',
               f"{summary['student_glue_average']:.2f}"))
  return '\n'.join(align(rows))
