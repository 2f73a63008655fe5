"""RL-KD end to end: several teachers, one student, a policy that weights them.

  1. teachers: K models that differ in kind and strength (depth, training
     rows, dropout, epochs: `teacher.member_*`), each a resumable phase; their
     logits on the training and evaluation sets are stored once under a key of
     teacher config and data in `teacher.store_dir`;
  2. the student, for `distill.weighting`:
       'equal'  — equal-weight multi-teacher KD for the whole budget;
       'single' — KD from teacher `distill.single_teacher` alone;
       'policy' — RL-KD: (2) warm-up with equal weights, (3) policy
                  pre-training with the student frozen, (4) one student step
                  and one policy step per batch for the rest of the budget.
     Every variant takes the same number of student steps on the same data;
  3. the policy's teacher weights over training (with how far it separates
     the teachers, and when that settles) and by instance difficulty
     (policy_record.py: policy_weights.json and two PNG plots), dev metrics,
     HF export, summary.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kdjax import loop, parallel, scaffold, seeds, students, summary, teachers
from kdjax.classifier import best_metric, classifier_start, total_steps, train_classifier
from kdjax.data import sources
from kdjax.data.batching import TrainBatches, train_batches
from kdjax.data.tasks import Examples
from kdjax.data.tokenize import encode, model_inputs
from kdjax.errors import KdjaxError
from kdjax.methods.rl_kd import pieces, policy_record
from kdjax.metrics import compute_metrics, constant_baseline
from kdjax.models.bert import count_params
from kdjax.models.hf import HFCheckpoint, export_hf_checkpoint
from kdjax.steps import Schedule, Start, init_state, jit_predict, jit_train_step, make_optimizer

WEIGHTINGS = ('policy', 'equal', 'single')


# ------------------------------------------------------------------ data

def holdout_split(examples: Examples, fraction: float, seed: int, regression: bool
                  ) -> tuple[Examples, Examples | None]:
  """(train, held-out) with `fraction` of the rows held out (stratified by class).

  The held-out rows give R3 its rewards; every variant trains on the same rest,
  so all students see the same labelled data.
  """
  if fraction <= 0:
    return examples, None
  if not fraction < 1:
    raise KdjaxError('distill.heldout_fraction must be in [0, 1)')
  if regression:
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = int(round(fraction * len(examples)))
    return examples.subset(np.sort(order[cut:])), examples.subset(np.sort(order[:cut]))
  parts = sources.stratified_split(examples, seed, fraction, 0.0)
  return parts['train'], parts.get('dev')


def encode_split(tokenizer, examples: Examples, max_length: int) -> dict[str, np.ndarray]:
  return {**encode(tokenizer, examples, max_length), 'labels': examples.labels}


# ------------------------------------------------------------------ teachers

def teacher_specs(section) -> list[dict]:
  """One dict per teacher (name, layers, epochs, dropout, train fraction, seed)
  from the parallel `teacher.member_*` tuples."""
  columns = {key: tuple(section[f'member_{key}']) for key in
             ('names', 'layers', 'epochs', 'dropouts', 'train_fractions')}
  names = columns['names']
  if not names or len({len(v) for v in columns.values()}) != 1:
    raise KdjaxError('teacher.member_names, member_layers, member_epochs, member_dropouts and '
                     'member_train_fractions must list one entry per teacher (got '
                     + ', '.join(str(len(v)) for v in columns.values()) + ')')
  if len(set(names)) != len(names):
    raise KdjaxError(f'teacher.member_names must be distinct: {names}')
  if not all(0.0 <= d < 1.0 for d in columns['dropouts']):
    raise KdjaxError(f"teacher.member_dropouts {columns['dropouts']} must be in [0, 1)")
  if not all(0.0 < f <= 1.0 for f in columns['train_fractions']):
    raise KdjaxError(f"teacher.member_train_fractions {columns['train_fractions']} must be "
                     'in (0, 1]')
  return [{'name': n, 'layers': int(l), 'epochs': float(e), 'dropout': float(d),
           'train_fraction': float(f), 'seed': seeds.member_seed(section.seed, k)}
          for k, (n, l, e, d, f) in enumerate(zip(*columns.values()))]


def member_rows(num_rows: int, fraction: float, seed: int) -> np.ndarray:
  """The training rows a teacher fine-tunes on: a seeded random `fraction` of
  them, in order (all rows for 1). Teachers on different rows disagree on
  different instances, which is what a per-instance choice can use."""
  if fraction >= 1.0:
    return np.arange(num_rows)
  count = max(1, int(round(fraction * num_rows)))
  return np.sort(np.random.default_rng(seed).permutation(num_rows)[:count])


def member_checkpoint(ckpt: HFCheckpoint, t: dict) -> HFCheckpoint:
  """Teacher `t`'s starting checkpoint: its layers and dropout rate."""
  kept = truncated(ckpt, t['layers'])
  return dataclasses.replace(kept, config=dataclasses.replace(
      kept.config, hidden_dropout=t['dropout'], attention_dropout=t['dropout']))


def truncated(ckpt: HFCheckpoint, num_layers: int) -> HFCheckpoint:
  """The checkpoint's first `num_layers` layers (0 = all): a smaller teacher of the same kind."""
  full = ckpt.config.num_layers
  if num_layers == 0 or num_layers == full:
    return ckpt
  if not 0 < num_layers <= full:
    raise KdjaxError(f'teacher.member_layers {num_layers}: the checkpoint has {full} layers')
  encoder = {k: v for k, v in ckpt.encoder_params.items()
             if not k.startswith('layer_') or int(k.split('_')[1]) < num_layers}
  return dataclasses.replace(ckpt, config=dataclasses.replace(ckpt.config,
                                                              num_layers=num_layers),
                             encoder_params=encoder)


def prepare_teachers(run: scaffold.Run, spec, encoded: dict, key: str, store_dir: str,
                     dev_split: str) -> dict[str, np.ndarray]:
  """Trains (or reuses) the teachers (evaluated on `dev_split` while they
  train); returns their logits per split of `encoded`, each [K, N, C]."""
  config, mesh, lengths = run.config, run.mesh, run.lengths

  def compute():
    outputs = {split: [] for split in encoded}
    for k, t in enumerate(teacher_specs(config.teacher)):
      model, params = teachers.build_teacher(member_checkpoint(run.teacher.checkpoint, t),
                                             spec, t['seed'])
      predict = jit_predict(model, mesh)
      if t['epochs'] > 0:
        name = f'teacher_{t["name"]}'
        eval_fn = lambda p: loop.evaluate(predict, p, model_inputs(encoded[dev_split]),
                                          encoded[dev_split]['labels'], spec,
                                          config.eval_batch_size, mesh, lengths)
        rows = member_rows(len(encoded['train']['labels']), t['train_fraction'],
                           t['seed'] + seeds.RL_TEACHER_ROWS)
        own = {k: v[rows] for k, v in encoded['train'].items()}
        start = classifier_start(model, params, own, spec, config.teacher, mesh,
                                 name=name, epochs=t['epochs'], lengths=lengths)
        params = train_classifier(run, name, start, own, config.teacher, eval_fn,
                                  phase_id=seeds.rl_teacher(k), seed=t['seed'],
                                  best_metric=best_metric(config.teacher, spec),
                                  epochs=t['epochs'], lengths=lengths,
                                  checkpoint_dir=os.path.join(store_dir, f"{t['name']}-{key}"))
      for split, arrays in encoded.items():
        outputs[split].append(loop.predict_all(predict, params, model_inputs(arrays),
                                               config.eval_batch_size, mesh,
                                               desc=f'{t["name"]} outputs on {split}',
                                               lengths=lengths))
    return {split: np.stack(v) for split, v in outputs.items()}
  return teachers.stored_outputs(store_dir, 'teachers', key, compute)


# ------------------------------------------------------------------ student

@dataclasses.dataclass(frozen=True)
class StageBatches:
  """Training batches of one stage: the student's order continues across
  stages (`offset`); R3 stages add a held-out batch under `heldout_*` keys."""
  train: Any                      # TrainBatches or BucketedBatches
  offset: int = 0
  heldout: TrainBatches | None = None

  def batch_at(self, step: int) -> dict[str, np.ndarray]:
    batch = self.train.batch_at(self.offset + step)
    if self.heldout is not None:
      batch.update({f'heldout_{k}': v for k, v in self.heldout.batch_at(step).items()})
    return batch


def rl_settings(section) -> pieces.RLSettings:
  return pieces.RLSettings(section.selection, section.reward, tuple(section.extra_features),
                           section.baseline_decay, section.baseline)


def student_stages(config, total_steps: int) -> list[tuple[str, int]]:
  """[(stage name, steps)] of this weighting; student steps always sum to total."""
  weighting = config.distill.weighting
  if weighting in ('equal', 'single'):
    return [('student', total_steps)]
  if weighting != 'policy':
    raise KdjaxError(f'distill.weighting {weighting!r}: use one of {WEIGHTINGS}')
  warmup = int(round(config.rl.warmup_fraction * total_steps))
  if not 0 <= warmup < total_steps:
    raise KdjaxError('rl.warmup_fraction must leave steps for joint training (in [0, 1))')
  stages = [('student_warmup', warmup), ('policy_pretrain', int(config.rl.pretrain_steps)),
            ('joint', total_steps - warmup)]
  return [(name, steps) for name, steps in stages if steps > 0]


def fixed_teacher_weights(config, num_teachers: int) -> tuple[float, ...]:
  if config.distill.weighting == 'single':
    k = config.distill.single_teacher
    if not 0 <= k < num_teachers:
      raise KdjaxError(f'distill.single_teacher {k}: there are {num_teachers} teachers')
    return tuple(float(i == k) for i in range(num_teachers))
  return (1.0 / num_teachers,) * num_teachers


def train_student(run: scaffold.Run, model, params, spec, arrays: dict, heldout: dict | None,
                  eval_fn):
  """Runs the stages of `student_stages`; returns the final train state."""
  config, mesh = run.config, run.mesh
  d, rl = config.distill, config.rl
  num_teachers = arrays['teacher_logits'].shape[1]
  parallel.check_batch_size(d.batch_size, mesh, 'distill batch_size')
  order = train_batches(arrays, d.batch_size, config.seed + seeds.STUDENT, run.lengths)
  total = total_steps(arrays, d, lengths=run.lengths)
  tx = make_optimizer(Schedule(d.learning_rate, total, int(d.warmup_fraction * total),
                               d.weight_decay))
  state = init_state(params, tx)
  losses = dict(alpha=d.alpha, temperature=d.temperature, regression=spec.regression)
  stages = student_stages(config, total)
  if d.weighting == 'policy':
    settings = rl_settings(rl)
    policy = pieces.TeacherPolicy(tuple(rl.hidden_sizes))
    policy_tx = optax.adam(rl.learning_rate)
    num_features = pieces.feature_size(model.config.hidden_size, spec.num_outputs,
                                       num_teachers, settings.extra_features)
    state['policy'] = pieces.init_policy_state(policy, num_features, num_teachers,
                                               policy_tx, config.seed + seeds.RL_POLICY_INIT)
    held = None
    if settings.reward == 'R3':
      if heldout is None or len(heldout['labels']) < rl.heldout_batch_size:
        raise KdjaxError(f'rl.reward=R3 needs at least rl.heldout_batch_size='
                         f'{rl.heldout_batch_size} held-out examples; raise '
                         'distill.heldout_fraction')
      parallel.check_batch_size(rl.heldout_batch_size, mesh, 'rl heldout_batch_size')
      held = TrainBatches(heldout, rl.heldout_batch_size,
                          seed=config.seed + seeds.RL_HELDOUT_ORDER,
                          process_index=jax.process_index(),
                          process_count=jax.process_count())
    rl_static = dict(model=model, tx=tx, policy=policy, policy_tx=policy_tx, rl=settings,
                     **losses)
  state = parallel.replicate(state, mesh)

  student_steps_done = 0
  for phase_id, (name, steps) in enumerate(stages, start=seeds.STUDENT):
    if name in ('student', 'student_warmup'):
      weights = (fixed_teacher_weights(config, num_teachers) if name == 'student'
                 else (1.0 / num_teachers,) * num_teachers)
      step_fn = jit_train_step(pieces.fixed_weight_step(model, teacher_weights=weights,
                                                        **losses), mesh, tx=tx)
      batches = StageBatches(order)
    elif name == 'policy_pretrain':
      step_fn = jit_train_step(pieces.rl_step, mesh, update_student=False, **rl_static)
      pretrain_order = dataclasses.replace(order, seed=config.seed + seeds.RL_PRETRAIN_ORDER)
      batches = StageBatches(pretrain_order, 0, held)
    else:  # joint
      step_fn = jit_train_step(pieces.rl_step, mesh, update_student=True, **rl_static)
      batches = StageBatches(order, student_steps_done, held)
    last = name == stages[-1][0]  # the student's weights come from its last stage
    state = run.train(name, Start(state, step_fn), batches, steps, eval_fn,
                      phase_id=phase_id, seed=config.seed,
                      best_metric=best_metric(d, spec) if last else None)
    state = {**state, 'step': jnp.zeros_like(state['step'])}  # the next stage counts anew
    if name != 'policy_pretrain':
      student_steps_done += steps
  return state


# ------------------------------------------------------------------ run

def variant_name(config) -> str:
  d = config.distill
  if d.weighting == 'single':
    return f'single teacher {tuple(config.teacher.member_names)[d.single_teacher]}'
  if d.weighting == 'equal':
    return 'equal weights'
  return f'RL-KD {config.rl.reward} ({config.rl.selection})'


def run(config, workdir: str) -> dict:
  """All stages; returns (and writes to workdir/summary.json) the summary."""
  specs = teacher_specs(config.teacher)
  if config.distill.weighting == 'policy':
    rl_settings(config.rl)  # bad switches fail before any training
  r = scaffold.begin(config, workdir)
  mesh = r.mesh
  spec, splits = sources.load_task(config.data)
  # The student is evaluated (and its best weights chosen) on dev during
  # training, and on the final split (test where there is one) at the end.
  eval_split = sources.final_eval_split(splits)
  dev_split = sources.during_training_eval_split(splits)
  evaluated = {name: sources.subsample(splits[name], config.data.max_eval_examples,
                                       config.data.split_seed)
               for name in dict.fromkeys((eval_split, dev_split))}
  train_ex, heldout_ex = holdout_split(splits['train'], config.distill.heldout_fraction,
                                       config.data.split_seed, spec.regression)
  tokenizer, length = r.teacher.tokenizer, config.data.max_length
  encoded = {'train': encode_split(tokenizer, train_ex, length),
             **{name: encode_split(tokenizer, ex, length) for name, ex in evaluated.items()}}
  heldout = None if heldout_ex is None else encode_split(tokenizer, heldout_ex, length)
  log = r.open_log()

  store_dir = os.path.join(config.teacher.store_dir or r.path('teachers'), spec.name)
  data_key = ''.join(sources.fingerprint(ex) for ex in (train_ex, *evaluated.values()))
  key = teachers.config_key(teachers.settings(config.teacher), specs, r.teacher.dir, data_key,
                            length, *teachers.dtype_parts(config))
  outputs = prepare_teachers(r, spec, encoded, key, store_dir, dev_split)
  eval_labels = encoded[eval_split]['labels']
  teacher_rows = [{**t, 'metrics': compute_metrics(spec.metrics, out, eval_labels,
                                                   spec.regression)}
                  for t, out in zip(specs, outputs[eval_split])]

  ckpt = r.teacher.checkpoint
  s_config = students.student_config(ckpt.config, config.student)
  model, params = students.init_student(s_config, spec.num_outputs, config.seed,
                                        config.student.init, ckpt.config,
                                        {'bert': ckpt.encoder_params},
                                        config.student.teacher_layers,
                                        config.student.layer_choice)
  predict = jit_predict(model, mesh)

  def eval_fn_on(split):
    return lambda p: loop.evaluate(predict, p, model_inputs(encoded[split]),
                                   encoded[split]['labels'], spec, config.eval_batch_size, mesh,
                                   r.lengths)
  arrays = {**encoded['train'], 'teacher_logits': np.transpose(outputs['train'], (1, 0, 2))}
  state = train_student(r, model, params, spec, arrays, heldout, eval_fn_on(dev_split))
  metrics = eval_fn_on(eval_split)(state['params'])
  log.write('student_final', 0, {f'{eval_split}_{k}': v for k, v in metrics.items()})

  host_params = jax.device_get(state['params'])
  export_dir = r.path('export', 'student')
  if jax.process_index() == 0:
    export_hf_checkpoint(export_dir, s_config, host_params['bert'],
                         host_params['classifier'], spec.label_names, r.teacher.dir)
  result = {'method': 'rl_kd', 'task': spec.name, 'variant': variant_name(config),
            'weighting': config.distill.weighting, 'eval_split': eval_split,
            'dev_split': dev_split,
            'data_sizes': {'train': len(train_ex), 'heldout': 0 if heldout_ex is None
                           else len(heldout_ex),
                           **{name: len(ex) for name, ex in evaluated.items()}},
            'majority': constant_baseline(spec.metrics, encoded['train']['labels'], eval_labels,
                                          spec.regression, spec.num_outputs),
            'teachers': teacher_rows,
            'teacher_overlap': None if spec.regression else policy_record.teacher_overlap(
                arrays['teacher_logits'], arrays['labels']),
            'student': {'metrics': metrics, 'params': count_params(host_params),
                        'export_dir': export_dir}}
  if config.distill.weighting == 'policy':
    record = policy_record.write_policy_record(workdir, [t['name'] for t in specs], state,
                                               model, config, spec, arrays, mesh)
    result['policy'] = {'final_mean_prob': record['final_mean_prob'],
                        'by_difficulty': record['by_difficulty'],
                        'separation': record['separation'],
                        'over_training': record['over_training']}
  return r.finish(result)


def describe_teacher(t: dict) -> str:
  """'6 layers, 3 ep, dropout 0.1, all rows' for a teacher spec (older records
  lack dropout and train fraction)."""
  parts = [f"{t['layers'] or 'all'} layers", f"{t['epochs']:g} ep"]
  if 'dropout' in t:
    parts.append(f"dropout {t['dropout']:g}")
  if 'train_fraction' in t:
    parts.append('all rows' if t['train_fraction'] >= 1 else
                 f"{t['train_fraction']:.0%} of rows")
  return ', '.join(parts)


def format_table(result: dict) -> str:
  metric_names = list(result['student']['metrics'])
  rows = [('model', *metric_names)]
  if 'majority' in result:
    rows.append(('majority class (constant answer)',
                 *(f"{result['majority'][m]:.4f}" for m in metric_names)))
  for t in result['teachers']:
    rows.append((f"teacher {t['name']} ({describe_teacher(t)})",
                 *(f"{t['metrics'][m]:.4f}" for m in metric_names)))
  rows.append((f"student, {result['variant']}",
               *(f"{result['student']['metrics'][m]:.4f}" for m in metric_names)))
  lines = summary.align(rows)
  if 'policy' in result:
    lines.append('mean policy weight: ' + ', '.join(
        f"{t['name']} {p:.2f}" for t, p in zip(result['teachers'],
                                               result['policy']['final_mean_prob'])))
  return '\n'.join(lines)
