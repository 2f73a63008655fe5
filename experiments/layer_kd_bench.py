"""Where a plain-KD student's layer targets should come from: the teacher run
inside the step, or a store of its states.

  python experiments/layer_kd_bench.py            # all-MiniLM-L6-v2 -> 4 x 256, batch 32 x 128
  python experiments/layer_kd_bench.py --quick    # tiny random models, a smoke test

Times, in one process and in alternating rounds (the machine may be shared),
the student's train step (median seconds per step over each round's calls, the
best round kept) in three ways:
  logits  — logits-only KD against stored logits (what `distill.hidden_weight
            = attention_weight = 0` runs);
  in-step — + hidden-state MSE and attention KL, the frozen teacher run inside
            the jitted step (what kdjax runs);
  stored  — the same losses, the teacher's mapped hidden states and attentions
            read from a store on the host and sent with every batch (the
            teacher's forward pass is not timed: the best a store could do).
Every step goes through `kdjax.parallel.to_global` as in the training loop.
Also the bytes such a store holds for the training sets of the experiment
(experiments/intermediate_kd.py). Writes
experiments/results/layer_kd_bench{,_quick}.{md,json}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

from common import RESULTS, guarded, prepare_runtime

# name: (teacher: 'minilm' = the real all-MiniLM-L6-v2, else (layers, hidden,
# heads, intermediate) of a random BERT; student (layers, hidden, heads,
# intermediate); batch; length; timed steps per round; rounds)
SETUPS = {
    'full': ('minilm', (4, 256, 4, 1024), 32, 128, 8, 3),
    'quick': ((2, 64, 4, 128), (2, 32, 2, 64), 8, 32, 3, 2),
}
# Training sets of experiments/intermediate_kd.py: (rows, max_length), for its
# teacher (all-MiniLM-L6-v2: width 384, 12 heads) and 4-layer student.
STORES = {'bbc': (1703, 128), 'sst2': (2000, 64)}
STORE_TEACHER = (384, 12)
STORE_STUDENT_LAYERS = 4
MODES = ('logits', 'in-step', 'stored')


def _models(setup):
  import dataclasses
  from kdjax.models.bert import BertConfig, init_params
  from kdjax.models.heads import BertClassifier
  from kdjax.teachers import bundled_teacher_dir
  from kdjax.models.hf import load_hf_checkpoint
  import jax
  teacher_shape, student_shape = setup[:2]
  if teacher_shape == 'minilm':
    t_config = load_hf_checkpoint(bundled_teacher_dir()).config
  else:
    layers, hidden, heads, inter = teacher_shape
    t_config = BertConfig(hidden_size=hidden, num_layers=layers, num_heads=heads,
                          intermediate_size=inter)
  layers, hidden, heads, inter = student_shape
  s_config = dataclasses.replace(t_config, num_layers=layers, hidden_size=hidden,
                                 num_heads=heads, intermediate_size=inter)
  teacher, student = BertClassifier(t_config, 5), BertClassifier(s_config, 5)
  return (teacher, jax.device_get(init_params(teacher, jax.random.PRNGKey(0))),
          student, jax.device_get(init_params(student, jax.random.PRNGKey(1))))


def store_bytes() -> dict:
  """Bytes of float32 mapped hidden states (embeddings + one per student
  layer) and attentions (one per student layer) for each training set."""
  (width, heads), layers = STORE_TEACHER, STORE_STUDENT_LAYERS
  out = {}
  for task, (rows, length) in STORES.items():
    hidden = rows * length * width * 4 * (layers + 1)
    attention = rows * heads * length * length * 4 * layers
    out[task] = {'rows': rows, 'length': length, 'hidden_bytes': hidden,
                 'attention_bytes': attention}
  return out


def measure(setup) -> dict:
  import jax
  from kdjax import parallel, steps
  from kdjax.methods.kd import pieces
  from kdjax.students import default_layer_map
  teacher, t_params, student, s_params = _models(setup)
  _, _, batch_size, length, timed, rounds = setup
  t_cfg, s_cfg = teacher.config, student.config
  layers = pieces.LayerTargets(default_layer_map(s_cfg.num_layers, t_cfg.num_layers),
                               hidden_weight=1.0, attention_weight=1.0)
  s_params = {**s_params, 'projection': jax.device_get(pieces.init_projections(
      2, s_cfg.num_layers, s_cfg.hidden_size, t_cfg.hidden_size))}
  rng = np.random.default_rng(0)
  host = {'input_ids': rng.integers(1000, 30000, (batch_size, length)).astype(np.int32),
          'token_type_ids': np.zeros((batch_size, length), np.int32),
          'attention_mask': np.ones((batch_size, length), np.int32),
          'labels': rng.integers(0, 5, batch_size).astype(np.int32),
          'teacher_logits': rng.normal(size=(batch_size, 5)).astype(np.float32),
          'weights': np.ones(batch_size, np.float32)}
  # The store's content for this batch: the mapped teacher states only.
  out = teacher.apply({'params': t_params}, host['input_ids'], host['token_type_ids'],
                      host['attention_mask'], output_hidden_states=True,
                      output_attentions=True)
  stored = {f'stored_hidden_{i}': np.asarray(out['hidden_states'][t])
            for i, (_, t) in enumerate(layers.hidden_pairs)}
  stored.update({f'stored_attention_{i}': np.asarray(out['attentions'][t])
                 for i, (_, t) in enumerate(layers.attention_pairs)})
  # The stored states are indexed in pair order, so the pairs become (s, s).
  identity = pieces.LayerTargets(tuple(range(s_cfg.num_layers)), 1.0, 1.0)
  logit_loss = pieces.classifier_loss(alpha=0.5, temperature=2.0, regression=False)
  from_store = pieces.layer_loss(identity, logit_loss)

  def stored_loss(out, batch):
    n = s_cfg.num_layers
    return from_store(out, {
        **batch, 'teacher_hidden': tuple(batch[f'stored_hidden_{i}'] for i in range(n + 1)),
        'teacher_attentions': tuple(batch[f'stored_attention_{i}'] for i in range(n))})

  mesh = parallel.make_mesh()
  tx = steps.make_optimizer(steps.Schedule(1e-4, 1000, 10, 0.01))
  common = dict(alpha=0.5, temperature=2.0, regression=False)
  jitted = {
      'logits': steps.jit_train_step(pieces.distill_step(student, **common), mesh, tx=tx),
      'in-step': steps.jit_train_step_frozen(
          pieces.distill_step(student, teacher=teacher, layers=layers, **common), mesh,
          t_params, tx=tx),
      'stored': steps.jit_train_step(steps.make_step(
          'stored_targets_step', pieces.layer_forward(student, layers), stored_loss),
          mesh, tx=tx),
  }
  batches = {'logits': host, 'in-step': host, 'stored': {**host, **stored}}
  state = {m: parallel.replicate(steps.init_state(
      s_params if m != 'logits' else pieces.classifier_params(s_params), tx), mesh)
      for m in MODES}
  key = jax.random.PRNGKey(0)
  compile_s = {}
  for m in MODES:  # compile and warm up
    start = time.perf_counter()
    state[m], metrics = jitted[m](state[m], parallel.to_global(batches[m], mesh), key)
    jax.block_until_ready(metrics)
    compile_s[m] = time.perf_counter() - start
  by_round = {m: [] for m in MODES}
  for _ in range(rounds):
    for m in MODES:
      times = []
      for _ in range(timed):
        start = time.perf_counter()
        state[m], metrics = jitted[m](state[m], parallel.to_global(batches[m], mesh), key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
      by_round[m].append(float(np.median(times)))
  step_s = {m: min(v) for m, v in by_round.items()}
  return {'step_s': step_s, 'by_round': by_round, 'first_call_s': compile_s,
          'ratio_to_logits': {m: step_s[m] / step_s['logits'] for m in MODES},
          'stored_batch_bytes': int(sum(v.nbytes for v in stored.values())),
          'teacher': {'layers': t_cfg.num_layers, 'hidden': t_cfg.hidden_size,
                      'heads': t_cfg.num_heads},
          'student': {'layers': s_cfg.num_layers, 'hidden': s_cfg.hidden_size,
                      'heads': s_cfg.num_heads},
          'layer_map': list(layers.layer_map), 'batch': batch_size, 'length': length,
          'timed_steps': timed, 'rounds': rounds,
          'store_bytes': store_bytes()}


def write(name: str, record: dict) -> None:
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, f'{name}.json'), 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  r, h = record['result'], record['hardware']
  t, s = r['teacher'], r['student']
  gib = lambda b: f'{b / 2**30:.2f} GiB'
  lines = [f"# Layer targets: teacher in the step or a store ({record['variant']})", '',
           f"Command: `{record['command']}`  ",
           f"Date: {record['date']}; hardware: {h['cpu_count']} CPU cores, "
           f"{h['device_count']} {h['platform']} device(s), jax {h['jax']}.  ",
           f"Teacher {t['layers']} x {t['hidden']} ({t['heads']} heads"
           f"{', all-MiniLM-L6-v2' if record['variant'] == 'full' else ', random'}), student "
           f"{s['layers']} x {s['hidden']} ({s['heads']} heads), layer map {r['layer_map']}; "
           f"batch {r['batch']} x {r['length']} tokens, float32, dropout on; hidden-state MSE "
           "(embeddings + every student layer) and attention KL on. Median step time of "
           f"{r['timed_steps']} steps per round, best of {r['rounds']} alternating rounds.", '',
           '| step | s / step | x logits-only | first call (s; compilation unless the cache held it) |',
           '|---|---|---|---|']
  for m in MODES:
    lines.append(f"| {m} | {r['step_s'][m]:.4f} | {r['ratio_to_logits'][m]:.2f} | "
                 f"{r['first_call_s'][m]:.1f} |")
  lines += ['', f"The stored states of one batch: {r['stored_batch_bytes'] / 2**20:.1f} MiB "
            'sent to the device with every step. A store over a whole training set of '
            'experiments/intermediate_kd.py (all-MiniLM-L6-v2 and a 4-layer student; float32, '
            'the mapped layers only, every row at full length):', '',
            '| training set | rows x length | hidden states | attentions |', '|---|---|---|---|']
  for task, b in r['store_bytes'].items():
    lines.append(f"| {task} | {b['rows']} x {b['length']} | {gib(b['hidden_bytes'])} | "
                 f"{gib(b['attention_bytes'])} |")
  lines += ['', '## Reading', '', f"- {record['reading']}"]
  with open(os.path.join(RESULTS, f'{name}.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')
  print('\n'.join(lines))


def reading(r: dict) -> str:
  ratio = r['ratio_to_logits']
  closer = 'slower' if r['step_s']['stored'] > r['step_s']['in-step'] else 'faster'
  return (f"Running the teacher inside the step costs {ratio['in-step']:.2f}x the "
          f"logits-only step; reading its states from a store costs {ratio['stored']:.2f}x "
          f"(the store is {closer} than the in-step teacher here) and needs the store's "
          "memory and a pass to fill it.")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true')
  args = parser.parse_args()
  prepare_runtime()
  from kdjax.summary import hardware
  variant = 'quick' if args.quick else 'full'
  result = measure(SETUPS[variant])
  record = {'variant': variant, 'date': datetime.date.today().isoformat(),
            'command': 'python experiments/layer_kd_bench.py ' + ' '.join(sys.argv[1:]),
            'hardware': hardware(), 'result': result}
  record['reading'] = reading(result)
  write('layer_kd_bench' + ('_quick' if args.quick else ''), record)


if __name__ == '__main__':
  guarded(main)
