"""Mixed-vocabulary distillation end to end: a student of a few megabytes with
its own small vocabulary.

  0. a WordPiece vocabulary of `mixed.vocab_size` tokens trained on the corpus;
  I. dual-vocabulary MLM of the teacher (from its pretrained weights) with the
     student embedding table and its up-projection, p_SV ramped up;
  II. the student (student vocabulary, small width) learns MLM plus layer-wise
     hidden-state MSE to the Stage-I teacher through one projection shared by
     all layers (in the student's parameter tree), starting from the Stage-I
     student embeddings;
  III. task fine-tuning of the student, with KD from the fine-tuned teacher
     when `distill.alpha < 1` (and, with `distill.augment_copies`, on
     teacher-labelled perturbed copies of the training set too); metrics,
     size, speed, HF export with the student's own vocabulary.
`mixed.pretrain=False` skips I and II: the same student trained on the task
alone (with `distill.alpha=1`, no distillation at all), starting from the
teacher-derived input layer Stage I starts from (`mixed.embedding_init=teacher`,
the control arm) or from random tables (`random`, the plain baseline).
"""
from __future__ import annotations

import hashlib
import os

import jax
import numpy as np

from kdjax import loop, parallel, scaffold, seeds, students, summary, teachers
from kdjax.classifier import best_metric, classifier_start, train_classifier
from kdjax.data import augment, sources, vocab
from kdjax.data.batching import train_batches
from kdjax.data.tokenize import encode, load_tokenizer, model_inputs
from kdjax.errors import KdjaxError
from kdjax.methods.kd.pipeline import task_teacher
from kdjax.methods.mixed_vocab import pieces
from kdjax.metrics import constant_baseline
from kdjax.models.bert import BertConfig, init_params
from kdjax.models.heads import BertClassifier
from kdjax.models.hf import export_hf_checkpoint
from kdjax.models.mixed import DualVocabBert, MlmStudent
from kdjax.steps import jit_predict, phase_optimizer, start_phase



# ------------------------------------------------------------------ corpus

def corpus_texts(mixed, data, task_train) -> list[str]:
  """The unlabelled text of `mixed.corpus`: 'task' (the task's training texts),
  'bbc' (BBC News paragraphs), 'glue' (every GLUE training sentence in
  `data.glue_dir`) or 'files' (`mixed.corpus_files`, one passage per line);
  a seeded subsample of at most `mixed.max_corpus_texts`."""
  if mixed.corpus == 'task':
    texts = list(task_train.texts_a) + list(task_train.texts_b or [])
  elif mixed.corpus == 'bbc':
    articles = sources.load_bbc(sources.bbc_root(), 0, 0.0, 0.0)['train'].texts_a
    texts = [line for a in articles for line in a.split('\n')]
  elif mixed.corpus == 'glue':
    texts = []
    for task in ('cola', 'sst2', 'mrpc', 'stsb', 'rte', 'wnli'):
      ex = sources.load_glue_dir(task, data.glue_dir)['train']
      texts += list(ex.texts_a) + list(ex.texts_b or [])
  elif mixed.corpus == 'files':
    if not mixed.corpus_files:
      raise KdjaxError('mixed.corpus=files needs mixed.corpus_files')
    texts = []
    for path in mixed.corpus_files:
      try:
        with open(path, encoding='utf-8') as f:
          texts += f.read().split('\n')
      except (OSError, UnicodeDecodeError) as e:
        raise KdjaxError(f'corpus file {path}: {e}') from None
  else:
    raise KdjaxError(f"unknown mixed.corpus {mixed.corpus!r}; use 'task', 'bbc', 'glue' "
                     "or 'files'")
  texts = [t.strip() for t in texts if len(t.split()) >= 3]
  if not texts:
    raise KdjaxError(f'the {mixed.corpus!r} corpus has no text of at least 3 words')
  if mixed.max_corpus_texts and len(texts) > mixed.max_corpus_texts:
    keep = np.random.default_rng(0).permutation(len(texts))[:mixed.max_corpus_texts]
    texts = [texts[i] for i in np.sort(keep)]
  return texts


def _pretrain_root(config, workdir: str) -> str:
  """Where the vocabulary and Stages I-II live: `mixed.shared_dir` lets runs on
  several tasks and seeds share them."""
  return config.mixed.shared_dir or workdir


def _corpus_key(config, corpus: list[str]) -> str:
  return teachers.config_key(config.mixed.vocab_size, hashlib.sha256(
      '\n'.join(corpus).encode('utf-8', 'replace')).hexdigest())


def _stage_keys(config, teacher_dir: str, corpus: list[str], lengths: tuple[int, ...]
                ) -> tuple[str, str]:
  """Everything Stage I, then Stage II, depends on: a run with other settings
  never resumes them, and a Stage-II change keeps Stage I. (`lengths`: the
  length buckets, which change the batches.)"""
  mixed = {k: v for k, v in config.mixed.to_dict().items() if k not in ('shared_dir',
                                                                       'pretrain')}
  stage1 = teachers.config_key(teacher_dir, mixed, config.student.hidden_size,
                               config.stage1.to_dict(), config.data.max_length,
                               _corpus_key(config, corpus), *teachers.dtype_parts(config),
                               *(('buckets', *lengths) if lengths else ()))
  return stage1, teachers.config_key(stage1, config.student.to_dict(),
                                     config.stage2.to_dict())


def student_vocabulary(config, corpus: list[str], workdir: str):
  """(directory, tokenizer) of the student vocabulary, trained once per corpus and size."""
  path = config.mixed.vocab_dir or os.path.join(
      _pretrain_root(config, workdir), 'student_vocab-' + _corpus_key(config, corpus))
  if not os.path.exists(os.path.join(path, 'vocab.txt')):
    if config.mixed.vocab_dir:
      raise KdjaxError(f'mixed.vocab_dir {path} has no vocab.txt')
    vocab.train_wordpiece(corpus, config.mixed.vocab_size, path)
  return path, load_tokenizer(path)


def student_bert_config(config, vocab_size: int) -> BertConfig:
  s = config.student
  try:
    return BertConfig(vocab_size=vocab_size, hidden_size=s.hidden_size,
                      num_layers=s.num_layers, num_heads=s.num_heads,
                      intermediate_size=s.intermediate_size,
                      max_position_embeddings=s.max_positions, dtype=config.compute_dtype)
  except ValueError as e:
    raise KdjaxError(f'student config: {e}') from None


# ------------------------------------------------------------------ stages I and II

def pretrain_student(run: scaffold.Run, tok_s, corpus: list[str], s_config: BertConfig):
  """Stages I and II; returns the student encoder params (student vocabulary)."""
  config, mesh, ckpt, tok_t = run.config, run.mesh, run.teacher.checkpoint, run.teacher.tokenizer
  m = config.mixed
  length = config.data.max_length
  seed = m.pretrain_seed
  root = _pretrain_root(config, run.workdir)
  stage1_key, stage2_key = _stage_keys(config, run.teacher.dir, corpus, run.lengths)
  segments = vocab.segment_words(tok_t, tok_s, corpus, max_words=length, max_pieces=length)
  if run.lengths:
    segments['attention_mask'] = vocab.mixed_length_mask(segments, length)
  segmentation = pieces.Segmentation(length, m.max_predictions, m.mask_prob,
                                     pieces.VocabIds.of(tok_t), pieces.VocabIds.of(tok_s))

  def train(name, section, phase_id, start, checkpoint_dir):
    parallel.check_batch_size(section.batch_size, mesh, f'{name} batch_size')
    batches = train_batches(segments, section.batch_size, seed + phase_id, run.lengths)
    return run.train(name, start, batches, section.steps, loop.no_eval, phase_id=phase_id,
                     seed=seed, checkpoint_dir=checkpoint_dir)['params']

  # Stage I: the teacher learns to read the student vocabulary.
  dual = DualVocabBert(ckpt.config, len(tok_s), s_config.hidden_size)
  ids = np.zeros((1, 8), np.int32)
  dual_params = jax.device_get(dual.init(jax.random.PRNGKey(seed), ids, ids, ids,
                                         np.ones_like(ids), ids[:, :2])['params'])
  dual_params['bert'] = ckpt.encoder_params
  derived = teacher_derived_words(m.embedding_init, ckpt, tok_s, tok_t, s_config.hidden_size)
  basis = None
  if derived is not None:
    table, basis = derived
    dual_params['student_embeddings'], dual_params['student_up'] = table, basis.T
  s1 = config.stage1
  step = pieces.dual_mlm_step(dual, segmentation=segmentation, p_final=s1.p_student,
                              ramp_fraction=s1.ramp_fraction, ramp_over=s1.steps)
  dual_params = train('stage1_dual_mlm', s1, seeds.MIXED_STAGE1,
                      start_phase(dual_params, step, phase_optimizer(s1, s1.steps), mesh),
                      os.path.join(root, f'stage1-{stage1_key}'))

  # Stage II: the student learns from the Stage-I teacher on student-vocabulary text.
  s2 = config.stage2
  student = MlmStudent(s_config, ckpt.config.hidden_size, s2.projection)
  s_params = jax.device_get(student.init(jax.random.PRNGKey(seed + 1), ids, ids,
                                         np.ones_like(ids), ids[:, :2])['params'])
  s_params['bert']['embeddings']['word_embeddings']['embedding'] = np.asarray(
      jax.device_get(dual_params['student_embeddings']))
  if basis is not None:  # the rest of the input layer, and U, in the same subspace
    _transfer_to_student(s_params, ckpt.encoder_params['embeddings'], basis,
                         np.asarray(jax.device_get(dual_params['student_up'])), s2.projection)
  layer_map = students.checked_layer_map(s2.layer_map, s_config.num_layers,
                                         ckpt.config.num_layers, 'stage2.layer_map')
  step = pieces.student_distill_step(
      student, teacher=dual, segmentation=segmentation,
      layer_map=tuple(t + 1 for t in layer_map),  # hidden-state indices
      hidden_weight=s2.hidden_weight, projection=s2.projection)
  start = start_phase(s_params, step, phase_optimizer(s2, s2.steps), mesh, frozen=dual_params)
  s_params = train('stage2_student', s2, seeds.MIXED_STAGE2, start,
                   os.path.join(root, f'stage2-{stage2_key}'))
  return jax.device_get(s_params)['bert']


def teacher_derived_words(embedding_init: str, ckpt, tok_s, tok_t, width: int
                          ) -> tuple[np.ndarray, np.ndarray] | None:
  """(student word table [V_S, width], its basis [d_T, width]) spelled from the
  teacher's word vectors (`students.transferred_word_table`) when
  `embedding_init` is 'teacher'; None when it is 'random'."""
  if embedding_init == 'random':
    return None
  if embedding_init != 'teacher':
    raise KdjaxError(f"unknown mixed.embedding_init {embedding_init!r}; use 'teacher' "
                     "or 'random'")
  return students.transferred_word_table(
      np.asarray(ckpt.encoder_params['embeddings']['word_embeddings']['embedding']),
      *vocab.teacher_pieces_of(tok_s, tok_t), width)


def _project_input_tables(student_embeddings: dict, teacher_embeddings, basis: np.ndarray
                          ) -> None:
  """Replaces the student's position and token-type tables (in place) by the
  teacher's projected on `basis` [d_T, d_S]; rows the teacher lacks stay the
  student's own."""
  for table in ('position_embeddings', 'token_type_embeddings'):
    projected = np.asarray(teacher_embeddings[table]['embedding']) @ basis
    rows = min(len(projected), len(student_embeddings[table]['embedding']))
    start = np.array(student_embeddings[table]['embedding'], np.float32)
    start[:rows] = projected[:rows]
    student_embeddings[table] = {'embedding': start}


def _transfer_to_student(s_params, teacher_embeddings, basis: np.ndarray, up: np.ndarray,
                         projection: str) -> None:
  """Starts the Stage-II student's position and token-type tables from the
  teacher's, projected on `basis` [d_T, d_S] (the subspace of the transferred
  word table), and its shared projection from the Stage-I up-projection `up`
  [d_S, d_T] ('up'), or its transpose ('down'): the student starts in the
  teacher's coordinates instead of relearning them."""
  _project_input_tables(s_params['bert']['embeddings'], teacher_embeddings, basis)
  s_params['projection'] = (up if projection == 'up' else up.T).astype(np.float32)


def teacher_initialised_input(s_bert, derived: tuple[np.ndarray, np.ndarray],
                              teacher_embeddings) -> dict:
  """The control arm's encoder: `s_bert` with the input layer Stage I would
  start from (the teacher-derived word table and the teacher's position and
  token-type tables on its basis), with no Stage I or II, so that a comparison
  with Stages I-II measures the pre-training, not the initialisation."""
  table, basis = derived
  s_bert = dict(s_bert)
  embeddings = dict(s_bert['embeddings'])
  embeddings['word_embeddings'] = {'embedding': np.array(table, np.float32)}
  _project_input_tables(embeddings, teacher_embeddings, basis)
  s_bert['embeddings'] = embeddings
  return s_bert


# ------------------------------------------------------------------ run

def run(config, workdir: str) -> dict:
  """All stages; returns (and writes to workdir/summary.json) the summary."""
  perturbation = augment.perturbation_of(config.distill)  # checked before any work
  r = scaffold.begin(config, workdir)
  mesh, ckpt, tok_t = r.mesh, r.teacher.checkpoint, r.teacher.tokenizer
  length = config.data.max_length
  spec, splits = sources.load_task(config.data)
  dev_split, final_split = (sources.during_training_eval_split(splits),
                            sources.final_eval_split(splits))
  for name in dict.fromkeys((dev_split, final_split)):  # in a fixed order
    splits[name] = sources.subsample(splits[name], config.data.max_eval_examples,
                                     config.data.split_seed)
  corpus = corpus_texts(config.mixed, config.data, splits['train'])
  vocab_dir, tok_s = student_vocabulary(config, corpus, workdir)
  s_config = student_bert_config(config, len(tok_s))
  if length > s_config.max_position_embeddings:
    raise KdjaxError(f'data.max_length {length} exceeds student.max_positions '
                     f'{s_config.max_position_embeddings}')
  log = r.open_log()

  def encoded_with(tokenizer):
    return {name: {**encode(tokenizer, ex, length), 'labels': ex.labels}
            for name, ex in splits.items()}

  encoded_t, encoded_s = encoded_with(tok_t), encoded_with(tok_s)

  def eval_fn_for(encoded):
    return lambda predict: (lambda params: loop.evaluate(
        predict, params, model_inputs(encoded[dev_split]), encoded[dev_split]['labels'], spec,
        config.eval_batch_size, mesh, r.lengths))

  # The task teacher (its own vocabulary): metrics to compare with, and KD targets.
  _, t_params, t_predict, teacher_outputs_on = task_teacher(
      r, spec, encoded_t['train'], sources.fingerprint(splits['train']), eval_fn_for(encoded_t))
  teacher_logits = teacher_outputs_on(encoded_t['train'], sources.fingerprint(splits['train']))

  s_model = BertClassifier(s_config, spec.num_outputs)
  s_params = jax.tree.map(np.asarray, init_params(s_model, jax.random.PRNGKey(config.seed)))
  if config.mixed.pretrain:
    s_params['bert'] = pretrain_student(r, tok_s, corpus, s_config)
  else:
    derived = teacher_derived_words(config.mixed.embedding_init, ckpt, tok_s, tok_t,
                                    s_config.hidden_size)
    if derived is not None:  # the control arm: Stage I's starting point, no Stages I-II
      s_params['bert'] = teacher_initialised_input(s_params['bert'], derived,
                                                   ckpt.encoder_params['embeddings'])
  s_predict = jit_predict(s_model, mesh)
  arrays = dict(encoded_s['train'])
  if config.distill.alpha < 1.0:
    arrays['teacher_logits'] = teacher_logits
  if perturbation.copies:  # one transfer set per data split seed: the same for every seed
    transfer = augment.encoded_transfer_set(splits['train'], perturbation,
                                            config.data.split_seed, tok_t, tok_s, length)
    arrays = augment.with_transfer_set(arrays, augment.labelled(
        transfer, teacher_outputs_on(transfer.teacher_arrays, transfer.key), spec.regression))
  start = classifier_start(s_model, s_params, arrays, spec, config.distill, mesh,
                           name='student', alpha=config.distill.alpha,
                           temperature=config.distill.temperature, lengths=r.lengths)
  s_params = train_classifier(r, 'student', start, arrays, config.distill,
                              eval_fn_for(encoded_s)(s_predict), phase_id=seeds.MIXED_STAGE3,
                              seed=config.seed, best_metric=best_metric(config.distill, spec),
                              lengths=r.lengths)

  result = {'method': 'mixed_vocab', 'task': spec.name, 'eval_split': final_split,
            'pretrained': bool(config.mixed.pretrain), 'task_kd': config.distill.alpha < 1.0,
            'embedding_init': config.mixed.embedding_init,
            # always the training set's most frequent class (regression: its mean
            # score), on the final split: what a student must clearly beat
            'majority': constant_baseline(spec.metrics, np.asarray(splits['train'].labels),
                                          np.asarray(splits[final_split].labels),
                                          spec.regression, spec.num_outputs),
            'data_sizes': {k: len(v) for k, v in splits.items()},
            'transfer_set': len(arrays['labels']) - len(splits['train']),
            'corpus_texts': len(corpus), 'student_vocab': len(tok_s)}
  final_t = encoded_t[final_split]
  for role, model_cfg, params, predict, encoded, tokenizer_dir, outputs in (
      ('teacher', ckpt.config, t_params, t_predict, encoded_t, r.teacher.dir,
       teacher_outputs_on(final_t, sources.fingerprint(splits[final_split]))),
      ('student', s_config, s_params, s_predict, encoded_s, vocab_dir, None)):
    result[role] = summary.describe_model(
        model_cfg, params, predict, model_inputs(encoded[final_split]),
        encoded[final_split]['labels'], spec, r.path('export', role), tokenizer_dir, config,
        mesh, r.lengths, outputs)
    log.write(f'{role}_final', 0,
              {f'{final_split}_{k}': v for k, v in result[role]['metrics'].items()})
  # The same student in half precision: the smaller on-disk form.
  fp16_dir = r.path('export', 'student-fp16')
  if jax.process_index() == 0:
    host = jax.device_get(s_params)
    export_hf_checkpoint(fp16_dir, s_config, host['bert'], host['classifier'],
                         spec.label_names, vocab_dir, dtype='float16')
  result['student']['disk_bytes_fp16'] = summary.file_size(
      os.path.join(fp16_dir, 'model.safetensors'))
  result['comparison'] = summary.compare(result['teacher'], result['student'], spec.metrics[0])
  return r.finish(result)


def format_table(result: dict) -> str:
  t, s, c = result['teacher'], result['student'], result['comparison']
  m = c['primary_metric']
  mib = lambda b: f'{b / 2 ** 20:.2f} MiB'
  rows = [('', 'teacher', 'student'),
          (f'{result["eval_split"]} {m}', f"{t['metrics'][m]:.4f}", f"{s['metrics'][m]:.4f}"),
          ('vocabulary', str(t['architecture']['vocab']), str(s['architecture']['vocab'])),
          ('parameters', f"{t['params']:,}", f"{s['params']:,}"),
          ('fp32 safetensors', mib(t['disk_bytes']), mib(s['disk_bytes'])),
          ('fp16 safetensors', '', mib(s['disk_bytes_fp16'])),
          ('examples/s', f"{t['examples_per_s']:.1f}", f"{s['examples_per_s']:.1f}")]
  lines = summary.align(rows)
  lines.append(f"kept {c['kept_fraction']:.1%} of the teacher's {m} at {c['disk_ratio']:.1f}x "
               f"smaller on disk ({'Stages I-III' if result['pretrained'] else 'task only'}, "
               f"{result['embedding_init']} embeddings"
               f"{', task KD' if result['task_kd'] else ''})")
  warning = summary.one_class_warning(result)
  return '\n'.join(lines + ([warning] if warning else []))
