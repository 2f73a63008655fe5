"""MT-DNN-KD end to end: per-task teacher ensembles -> one multi-task student.

  1. per task, K teachers (the pretrained encoder fine-tuned with different
     seeds and dropout rates), each a resumable phase;
  2. their averaged probabilities (scores for regression) over the training
     set, computed once and stored under a key of teacher config and data in
     `teacher.store_dir`, so every student run reuses them;
  3. one shared-encoder student with a head per task, batches drawn one task
     at a time ∝ task size, loss `w·hard + (1−w)·soft` (hard only without KD
     or for tasks without teachers);
  4. per-task dev metrics of every teacher, the ensemble and the student, and
     the GLUE average, in summary.json and a table.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import jax
import numpy as np

from kdjax import parallel, students, teachers, train
from kdjax.losses import weighted_mean
from kdjax.data import sources
from kdjax.data.tasks import TaskSpec, get_task
from kdjax.data.tokenize import encode
from kdjax.errors import KdjaxError
from kdjax.methods import ensemble
from kdjax.summary import align, hardware, write_json
from kdjax.metrics import compute_metrics, glue_average, glue_task_score
from kdjax.models.hf import HFCheckpoint
from kdjax.models.multitask import MultiTaskModel
from kdjax.observe import MetricsLog


@dataclasses.dataclass
class TaskData:
  spec: TaskSpec
  train: dict[str, np.ndarray]   # encoded inputs + float32 labels
  dev: dict[str, np.ndarray]
  fingerprint: str


def load_tasks(data, tokenizer) -> dict[str, TaskData]:
  """Encodes every task of `data.tasks`; dev-only tasks (e.g. QNLI here) are split."""
  tasks = {}
  for name in data.tasks:
    spec = get_task(name)
    if spec.name not in sources.GLUE_DIRS:
      raise KdjaxError(f'MT-DNN-KD runs GLUE tasks; {name!r} is not one')
    splits = (sources.load_glue_dir(spec.name, data.glue_dir, require_train=False)
              if data.source == 'glue_dir' else sources.load_glue_hub(spec.name))
    if 'train' not in splits:
      # Only the dev file exists: a seeded stratified split gives train and dev parts.
      if spec.regression:
        raise KdjaxError(f'{name}: no training file; dev-only splitting needs a '
                         'classification task')
      splits = sources.stratified_split(splits['dev'], data.split_seed,
                                        1.0 - data.dev_only_train_fraction, 0.0)
    train_ex = sources.subsample(splits['train'], data.max_train_examples, data.split_seed)
    dev_ex = sources.subsample(splits['dev'], data.max_eval_examples, data.split_seed)
    encoded = {}
    for split, ex in (('train', train_ex), ('dev', dev_ex)):
      encoded[split] = {**encode(tokenizer, ex, data.max_length),
                        'labels': ex.labels.astype(np.float32)}
    tasks[spec.name] = TaskData(spec, encoded['train'], encoded['dev'],
                                sources.fingerprint(train_ex) + sources.fingerprint(dev_ex))
  return tasks


def _inputs(arrays):
  return {k: arrays[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')}


def _class_labels(arrays, spec):
  return arrays['labels'] if spec.regression else arrays['labels'].astype(np.int32)


# ------------------------------------------------------------------ teachers

def _ensemble_key(config, task: TaskData, teacher_dir: str) -> str:
  identity = json.dumps({'teacher': config.teacher.to_dict(), 'dir': teacher_dir,
                         'data': task.fingerprint, 'max_length': config.data.max_length,
                         **{'dtype': d for d in teachers.dtype_parts(config)}},
                        sort_keys=True, default=str)
  return hashlib.sha256(identity.encode()).hexdigest()[:16]


def prepare_teachers(config, tasks: dict[str, TaskData], teacher_dir: str, ckpt: HFCheckpoint,
                     store_dir: str, mesh, log: MetricsLog) -> dict[str, dict]:
  """Trains (or reuses) each task's teacher ensemble; returns per task
  `soft_train` [N, C], `member_dev` [K, N, C] and `ensemble_dev` [N, C]."""
  wanted = tuple(config.teacher.tasks) or tuple(tasks)
  result = {}
  for task_index, name in enumerate(wanted):
    if name not in tasks:
      raise KdjaxError(f'teacher.tasks names {name!r}, which is not in data.tasks')
    task = tasks[name]
    path = os.path.join(store_dir, name, f'ensemble-{_ensemble_key(config, task, teacher_dir)}.npz')
    if not os.path.exists(path):
      _train_ensemble(config, task, task_index, ckpt, os.path.join(store_dir, name), path,
                      mesh, log)
    with np.load(path) as stored:
      result[name] = {k: stored[k] for k in stored.files}
  return result


def _train_ensemble(config, task, task_index, ckpt, task_dir, path, mesh, log):
  spec = task.spec
  key = os.path.basename(path)[len('ensemble-'):-len('.npz')]  # members belong to this config
  train_outputs, dev_outputs = [], []
  for k, dropout in enumerate(config.teacher.dropouts):
    member_cfg = dataclasses.replace(ckpt.config, hidden_dropout=dropout,
                                     attention_dropout=dropout)
    model, params = teachers.build_teacher(dataclasses.replace(ckpt, config=member_cfg),
                                           spec, config.teacher.seed + 100 * k)
    predict = train.jit_predict(model, mesh)
    dev_labels = _class_labels(task.dev, spec)
    eval_fn = lambda p: train.evaluate(predict, p, _inputs(task.dev), dev_labels, spec,
                                       config.eval_batch_size, mesh)
    params = train.fit_classifier(
        f'teacher_{spec.name}_{k}', 1000 + 10 * task_index + k, model, params,
        {**task.train, 'labels': _class_labels(task.train, spec)}, spec, config.teacher,
        config, mesh, os.path.join(task_dir, f'member_{k}-{key}'), log, eval_fn, alpha=1.0,
        temperature=1.0, seed=config.teacher.seed)
    train_outputs.append(train.predict_all(predict, params, _inputs(task.train),
                                           config.eval_batch_size, mesh,
                                           desc=f'{spec.name} teacher {k} outputs'))
    dev_outputs.append(train.predict_all(predict, params, _inputs(task.dev),
                                         config.eval_batch_size, mesh))
  if jax.process_index() == 0:
    tmp = f'{path}.tmp-{os.getpid()}.npz'
    np.savez(tmp, soft_train=ensemble.ensemble_soft_targets(train_outputs, spec.regression),
             member_dev=np.stack(dev_outputs),
             ensemble_dev=ensemble.ensemble_soft_targets(dev_outputs, spec.regression))
    os.replace(tmp, path)  # a student never reads half-written soft targets


def teacher_report(tasks: dict[str, TaskData], ensembles: dict[str, dict]) -> dict:
  """Dev metrics of every ensemble member and of the ensemble, per task."""
  report = {}
  for name, stored in ensembles.items():
    spec = tasks[name].spec
    labels = _class_labels(tasks[name].dev, spec)
    members = [compute_metrics(spec.metrics, out, labels, spec.regression)
               for out in stored['member_dev']]
    ens = ensemble.ensemble_predictions(stored['ensemble_dev'], spec.regression)
    report[name] = {'members': members,
                    'ensemble': compute_metrics(spec.metrics, ens, labels, spec.regression)}
  return report


# ------------------------------------------------------------------ student

def predict_multitask(params, batch, *, model):
  return model.apply({'params': params}, batch['input_ids'], batch['token_type_ids'],
                     batch['attention_mask'], batch['task_ids'])['logits']


def multitask_train_step(state, batch, rng, *, model, tx, table: ensemble.TaskTable,
                         hard_weight: float, temperature: float):
  """One student step on a (single-task) batch with its soft targets."""
  rng = jax.random.fold_in(rng, state['step'])

  def loss_fn(params):
    logits = model.apply({'params': params}, batch['input_ids'], batch['token_type_ids'],
                         batch['attention_mask'], batch['task_ids'], deterministic=False,
                         rngs={'dropout': rng})['logits']
    per_example = ensemble.multitask_loss(
        logits, batch['labels'], batch['soft_targets'], batch['has_soft'],
        batch['task_ids'], table, hard_weight=hard_weight, temperature=temperature)
    return weighted_mean(per_example, batch['weights'])

  return train.apply_gradients(state, loss_fn, tx)


def student_arrays(tasks: dict[str, TaskData], ensembles: dict[str, dict] | None,
                   width: int) -> tuple[dict[str, np.ndarray], ...]:
  """Per task: training inputs, labels, padded soft targets and has_soft flags."""
  out = []
  for name, task in tasks.items():
    n = len(task.train['labels'])
    soft = np.zeros((n, width), np.float32)
    has_soft = np.zeros(n, np.float32)
    if ensembles is not None and name in ensembles:
      targets = ensembles[name]['soft_train']
      soft[:, :targets.shape[1]] = targets
      has_soft[:] = 1.0
    out.append({**task.train, 'soft_targets': soft, 'has_soft': has_soft})
  return tuple(out)


def evaluate_tasks(predict, params, tasks: dict[str, TaskData], batch_size, mesh) -> dict:
  result = {}
  for t, (name, task) in enumerate(tasks.items()):
    arrays = {**_inputs(task.dev), 'task_ids': np.full(len(task.dev['labels']), t, np.int32)}
    outputs = train.predict_all(predict, params, arrays, batch_size, mesh)
    spec = task.spec
    result[name] = compute_metrics(spec.metrics, outputs[:, :spec.num_outputs],
                                   _class_labels(task.dev, spec), spec.regression)
  return result


def train_student(config, workdir: str, tasks: dict[str, TaskData], ckpt: HFCheckpoint,
                  ensembles: dict[str, dict] | None, mesh, log: MetricsLog) -> dict:
  """Trains the multi-task student; returns its per-task dev metrics."""
  table = ensemble.TaskTable(tuple(t.spec.num_outputs for t in tasks.values()),
                             tuple(t.spec.regression for t in tasks.values()))
  s_config = students.student_config(ckpt.config, config.student)
  model = MultiTaskModel(s_config, table.num_classes)
  ids = np.zeros((1, 8), np.int32)
  params = jax.device_get(model.init(jax.random.PRNGKey(config.seed), ids, ids,
                                     np.ones_like(ids), np.zeros(1, np.int32))['params'])
  params['bert'] = students.initialise_encoder(params['bert'], s_config, config.student.init,
                                               ckpt.config, ckpt.encoder_params,
                                               config.student.teacher_layers)
  arrays = student_arrays(tasks, ensembles, table.width)
  bs = config.distill.batch_size
  try:
    total = max(1, int(round(config.distill.epochs * sum(len(a['labels']) // bs
                                                          for a in arrays))))
    schedule = ensemble.task_schedule([len(a['labels']) for a in arrays], bs, total,
                                      config.seed)
  except ValueError as e:
    raise KdjaxError(f'{e}; lower distill.batch_size') from None
  batches = ensemble.MultiTaskBatches(arrays, schedule, bs, config.seed,
                                      jax.process_index(), jax.process_count())
  predict = train.jit_predict(model, mesh, predict_multitask)

  def eval_fn(p):
    per_task = evaluate_tasks(predict, p, tasks, config.eval_batch_size, mesh)
    flat = {f'{t}_{m}': v for t, ms in per_task.items() for m, v in ms.items()}
    flat['glue_average'] = glue_average(per_task)
    return flat

  params = train.fit('student', 2, params, multitask_train_step, batches, total,
                     config.distill, config, mesh, os.path.join(workdir, 'checkpoints', 'student'),
                     log, eval_fn, model=model, table=table,
                     hard_weight=config.distill.hard_weight if config.distill.use_kd else 1.0,
                     temperature=config.distill.temperature)
  return evaluate_tasks(predict, params, tasks, config.eval_batch_size, mesh)


# ------------------------------------------------------------------ run

def run(config, workdir: str) -> dict:
  started = time.time()
  train.ensure_writable(workdir)
  teacher_dir, ckpt, tokenizer = teachers.open_teacher(
      config.teacher.checkpoint, config.data.max_length, config.teacher.seed,
      config.compute_dtype)
  if len(config.teacher.dropouts) < 1:
    raise KdjaxError('teacher.dropouts must list one dropout rate per ensemble member')
  tasks = load_tasks(config.data, tokenizer)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
  log = MetricsLog(workdir)
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, 'config.json'), config.to_dict())
  store_dir = config.teacher.store_dir or os.path.join(workdir, 'teachers')
  ensembles = (prepare_teachers(config, tasks, teacher_dir, ckpt, store_dir, mesh, log)
               if config.distill.use_kd else None)
  student = train_student(config, workdir, tasks, ckpt, ensembles, mesh, log)
  result = {
      'method': 'mtdnn_kd', 'use_kd': bool(config.distill.use_kd),
      'tasks': {name: {'train_examples': len(t.train['labels']),
                       'dev_examples': len(t.dev['labels']),
                       'student': student[name],
                       'student_glue_score': glue_task_score(name, student[name])}
                for name, t in tasks.items()},
      'student_glue_average': glue_average(student),
      'hardware': hardware(), 'teacher_checkpoint': teacher_dir,
  }
  if ensembles is not None:
    for name, report in teacher_report(tasks, ensembles).items():
      result['tasks'][name].update(teachers=report['members'], ensemble=report['ensemble'])
  result['wall_seconds'] = time.time() - started
  log.write('student_final', 0, {'glue_average': result['student_glue_average']})
  log.close()
  if jax.process_index() == 0:
    write_json(os.path.join(workdir, 'summary.json'), result)
  return result


def format_table(summary: dict) -> str:
  rows = [('task', 'metric', 'ensemble', 'student')]
  for name, t in summary['tasks'].items():
    for metric, value in t['student'].items():
      ens = t.get('ensemble', {}).get(metric)
      rows.append((name, metric, '-' if ens is None else f'{ens:.4f}', f'{value:.4f}'))
  rows.append(('GLUE avg', '', '', f"{summary['student_glue_average']:.2f}"))
  return '\n'.join(align(rows))
