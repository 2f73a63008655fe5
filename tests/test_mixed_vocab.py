"""Mixed-vocabulary distillation: the student vocabulary, mixed segmentation
(text preserved, p_SV respected, static shapes, MLM masks), the dual-softmax and
shared-projection losses against hand-computed values."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax.data import sources, vocab
from kdjax.methods.mixed_vocab import pieces as mv


@pytest.fixture(scope='module')
def sentences(glue_dir):
  return sources.load_glue_dir('sst2', glue_dir)['train'].texts_a[:3000]


@pytest.fixture(scope='module')
def tokenizers(sentences, tmp_path_factory, minilm_dir):
  from transformers import AutoTokenizer
  path = vocab.train_wordpiece(sentences, 800, str(tmp_path_factory.mktemp('v') / 'vocab'))
  return AutoTokenizer.from_pretrained(minilm_dir), AutoTokenizer.from_pretrained(path)


def test_student_vocabulary_is_a_standard_bert_vocab(tokenizers, sentences):
  teacher, student = tokenizers
  assert 700 <= len(student) <= 800
  assert student.convert_ids_to_tokens([0, 1, 2, 3, 4]) == list(vocab.SPECIAL_TOKENS)
  words = student.tokenize(sentences[0])
  assert words and all(isinstance(w, str) for w in words)
  # Smaller vocabulary, longer segmentations of the same text.
  assert len(student.tokenize(' '.join(sentences[:50]))) > len(
      teacher.tokenize(' '.join(sentences[:50])))


def decode_words(ids, vocab_ids, attention, tok_t, tok_s):
  """Words of a mixed sequence, each piece read in its own vocabulary."""
  words = []
  last = int(attention.sum()) - 1  # [SEP]
  for pos in range(1, last):
    tok = (tok_s if vocab_ids[pos] else tok_t).convert_ids_to_tokens(int(ids[pos]))
    if tok.startswith('##'):
      words[-1] += tok[2:]
    else:
      words.append(tok)
  return words


def segment(tokenizers, texts, p, seed=0, max_length=48, mask_prob=0.15):
  tok_t, tok_s = tokenizers
  seg = vocab.segment_words(tok_t, tok_s, texts, max_words=40, max_pieces=64)
  fn = jax.jit(lambda rng, s, p: mv.mixed_segmentation(
      rng, s, p, max_length=max_length, max_predictions=8, mask_prob=mask_prob,
      teacher=mv.VocabIds.of(tok_t), student=mv.VocabIds.of(tok_s)))
  return seg, fn, jax.device_get(fn(jax.random.PRNGKey(seed), seg, p))


@pytest.mark.parametrize('p', [0.0, 0.5, 1.0])
def test_mixed_ids_decode_to_the_same_text(tokenizers, sentences, p):
  tok_t, tok_s = tokenizers
  texts = sentences[:64]
  _, _, out = segment(tokenizers, texts, p)
  words = vocab.split_words(tok_t, texts)
  for i in range(len(texts)):
    got = decode_words(out['original_ids'][i], out['vocab_ids'][i],
                       out['attention_mask'][i], tok_t, tok_s)
    assert got == words[i][:len(got)] and len(got) >= min(len(words[i]), 10), (got, words[i])
    sep = int(out['attention_mask'][i].sum()) - 1
    ends = {int(out['original_ids'][i][0]), int(out['original_ids'][i][sep])}
    assert ends <= {tok_t.cls_token_id, tok_s.cls_token_id, tok_t.sep_token_id,
                    tok_s.sep_token_id}
  if p == 0.0:
    assert out['vocab_ids'].sum() == 0
  if p == 1.0:
    assert np.all(out['vocab_ids'][out['attention_mask'] > 0] == 1)


def test_student_share_follows_p_and_shapes_are_static(tokenizers, sentences):
  seg, fn, _ = segment(tokenizers, sentences[:256], 0.0)
  shares = []
  for p in (0.2, 0.5, 0.8):
    out = jax.device_get(fn(jax.random.PRNGKey(1), seg, p))
    used = np.cumsum(seg['teacher_length'] > 0, axis=1) > 0  # any real word
    fitted = out['student_words'] | ((seg['teacher_length'] > 0) & ~out['student_words'])
    share = out['student_words'].sum() / max(1, (fitted & used).sum())
    shares.append(share)
    assert abs(share - p) < 0.04, (p, share)
    assert out['input_ids'].shape == (256, 48) and out['mlm_positions'].shape == (256, 8)
  # Another batch of other texts compiles nothing new: the shapes are fixed.
  other = vocab.segment_words(*tokenizers, sentences[256:300], max_words=40, max_pieces=64)
  before = fn._cache_size()
  padded = {k: np.take(v, np.arange(256) % len(v), axis=0) for k, v in other.items()}
  fn(jax.random.PRNGKey(2), padded, 0.3)
  assert fn._cache_size() == before


@pytest.mark.parametrize('p', [0.0, 0.5, 1.0])
def test_a_bucketed_row_is_mixed_as_at_full_length(tokenizers, sentences, p):
  # Stages I-II in length buckets: each row goes to the bucket its
  # `mixed_length_mask` names; mixed there, it holds the same words as at
  # max_length, however its words are mixed, and its MLM arrays fit the bucket.
  from kdjax.data.batching import BucketedBatches, bucket_lengths
  tok_t, tok_s = tokenizers
  max_length, lengths = 48, bucket_lengths((8, 16, 32), 48)
  seg = vocab.segment_words(tok_t, tok_s, sentences[:200], max_words=40, max_pieces=64)
  seg['attention_mask'] = vocab.mixed_length_mask(seg, max_length)
  segmentation = mv.Segmentation(max_length, 8, 0.15, mv.VocabIds.of(tok_t),
                                 mv.VocabIds.of(tok_s))
  mixed = jax.jit(lambda rng, batch: segmentation(rng, batch, p))
  batches = BucketedBatches(seg, 16, seed=0, lengths=lengths)
  seen = set()
  for step in range(batches.steps_per_epoch):
    batch = batches.batch_at(step)
    length = batch['attention_mask'].shape[1]
    seen.add(length)
    rows = np.flatnonzero(batch['weights'])
    full = {k: v for k, v in batch.items() if k != 'attention_mask'}
    out, at_full = (jax.device_get(mixed(jax.random.PRNGKey(step), b)) for b in (batch, full))
    assert out['input_ids'].shape[1] == length
    assert out['mlm_positions'].shape[1] == min(8, length)
    np.testing.assert_array_equal(out['student_words'][rows], at_full['student_words'][rows])
    for key in ('original_ids', 'vocab_ids', 'attention_mask'):
      np.testing.assert_array_equal(out[key][rows], at_full[key][rows][:, :length])
    assert not at_full['attention_mask'][rows][:, length:].any()
  assert len(seen) > 1


def test_mlm_masks_and_targets(tokenizers, sentences):
  tok_t, tok_s = tokenizers
  seg, fn, out = segment(tokenizers, sentences[:256], 0.5, mask_prob=0.15)
  w = out['mlm_weights'] > 0
  rows = np.arange(256)[:, None].repeat(8, 1)
  pos = out['mlm_positions']
  # Targets are the unmasked ids, in the vocabulary of their position.
  np.testing.assert_array_equal(out['mlm_targets'][w], out['original_ids'][rows, pos][w])
  np.testing.assert_array_equal(out['mlm_vocab'][w], out['vocab_ids'][rows, pos][w])
  sep = out['attention_mask'].sum(1, keepdims=True) - 1
  assert np.all((pos[w] >= 1) & (pos[w] < np.broadcast_to(sep, pos.shape)[w]))  # never specials
  # Roughly 15 % of the word pieces are chosen (capped at 8 per sequence).
  pieces = (sep[:, 0] - 1).sum()
  assert 0.10 < w.sum() / pieces < 0.16
  masked_input = out['input_ids'][rows, pos][w]
  mask_ids = np.where(out['mlm_vocab'][w] == 1, tok_s.mask_token_id, tok_t.mask_token_id)
  assert 0.7 < np.mean(masked_input == mask_ids) < 0.9
  # Unchosen positions are untouched.
  chosen = np.zeros_like(out['input_ids'], bool)
  chosen[rows[w], pos[w]] = True
  np.testing.assert_array_equal(out['input_ids'][~chosen], out['original_ids'][~chosen])


def log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_dual_mlm_loss_against_hand_computed_values():
  rng = np.random.default_rng(0)
  t_logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
  s_logits = rng.normal(size=(2, 3, 4)).astype(np.float32)
  targets = np.array([[5, 2, 0], [3, 6, 1]])
  target_vocab = np.array([[0, 1, 0], [1, 0, 1]])
  weights = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
  got = mv.dual_mlm_loss(t_logits, s_logits, targets, target_vocab, weights)
  lt, ls = log_softmax(t_logits), log_softmax(s_logits)
  row0 = -(lt[0, 0, 5] + ls[0, 1, 2]) / 2
  row1 = -(ls[1, 0, 3] + lt[1, 1, 6] + ls[1, 2, 1]) / 3
  np.testing.assert_allclose(got, [row0, row1], rtol=1e-5)
  np.testing.assert_allclose(mv.mlm_loss(s_logits, np.array([[1, 2, 3], [0, 0, 0]]), weights),
                             [-(ls[0, 0, 1] + ls[0, 1, 2]) / 2, -ls[1, :, 0].mean()], rtol=1e-5)


def test_shared_projection_loss_against_hand_computed_values():
  rng = np.random.default_rng(1)
  teacher = [rng.normal(size=(2, 3, 4)).astype(np.float32) for _ in range(4)]  # emb + 3 layers
  student = [rng.normal(size=(2, 3, 2)).astype(np.float32) for _ in range(3)]  # emb + 2 layers
  down = rng.normal(size=(4, 2)).astype(np.float32)
  mask = np.array([[1, 1, 0], [1, 1, 1]], np.float32)
  got = mv.shared_projection_loss(teacher, student, down, (1, 3), mask, 'down')
  expected = np.zeros(2)
  for l, m in ((1, 1), (2, 3)):
    mse = ((teacher[m] @ down - student[l]) ** 2).mean(-1)
    expected += (mse * mask).sum(1) / mask.sum(1)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  up = rng.normal(size=(2, 4)).astype(np.float32)
  got_up = mv.shared_projection_loss(teacher, student, up, (1, 3), mask, 'up')
  mse = [((student[l] @ up - teacher[m]) ** 2).mean(-1) for l, m in ((1, 1), (2, 3))]
  np.testing.assert_allclose(got_up, sum((x * mask).sum(1) / mask.sum(1) for x in mse),
                             rtol=1e-5)
  with pytest.raises(Exception, match='layer map'):
    mv.shared_projection_loss(teacher, student, down, (1,), mask)


def tiny_models(tokenizers):
  from kdjax.models.bert import BertConfig
  from kdjax.models.mixed import DualVocabBert, MlmStudent
  from tests.conftest import TINY
  tok_t, tok_s = tokenizers
  s_cfg = BertConfig(vocab_size=len(tok_s), hidden_size=16, num_layers=2, num_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
  return DualVocabBert(TINY, len(tok_s), 16), MlmStudent(s_cfg, TINY.hidden_size, 'down')


def init_dual_and_student(dual, student):
  ids = np.zeros((1, 8), np.int32)
  dual_params = dual.init(jax.random.PRNGKey(0), ids, ids, ids, np.ones_like(ids),
                          ids[:, :2])['params']
  s_params = student.init(jax.random.PRNGKey(1), ids, ids, np.ones_like(ids),
                          ids[:, :2])['params']
  return dual_params, s_params


@pytest.mark.parametrize('p', [0.0, 0.5])
def test_stage1_gradients_reach_student_embeddings_only_when_mixed(tokenizers, sentences, p):
  import optax
  from kdjax.steps import init_state
  tok_t, tok_s = tokenizers
  dual, _ = tiny_models(tokenizers)
  ids = np.zeros((1, 8), np.int32)
  dual_params = dual.init(jax.random.PRNGKey(0), ids, ids, ids, np.ones_like(ids),
                          ids[:, :2])['params']
  seg = vocab.segment_words(tok_t, tok_s, sentences[:8], max_words=30, max_pieces=30)
  batch = {**seg, 'weights': np.ones(8, np.float32)}
  segmentation = mv.Segmentation(32, 6, 0.3, mv.VocabIds.of(tok_t), mv.VocabIds.of(tok_s))
  tx = optax.sgd(0.1)
  state = init_state(dual_params, tx)
  step = mv.dual_mlm_step(dual, segmentation=segmentation, p_final=p, ramp_fraction=0.0,
                          ramp_over=1)
  new, metrics = step(state, batch, jax.random.PRNGKey(0), tx=tx)
  moved = lambda name: float(jnp.abs(new['params'][name] - dual_params[name]).max())
  assert np.isfinite(float(metrics['loss']))
  if p == 0.0:
    assert moved('student_embeddings') == 0.0 and moved('student_up') == 0.0
  else:
    assert moved('student_embeddings') > 0.0 and moved('student_up') > 0.0
  assert float(jnp.abs(new['params']['bert']['layer_0']['output']['kernel']
                       - dual_params['bert']['layer_0']['output']['kernel']).max()) > 0


def test_stage2_gradients_reach_projection_and_student_embeddings(tokenizers, sentences):
  import optax
  from kdjax.steps import init_state
  tok_t, tok_s = tokenizers
  dual, student = tiny_models(tokenizers)
  dual_params, s_params = init_dual_and_student(dual, student)
  teacher_before = jax.tree.map(np.array, jax.device_get(dual_params))
  seg = vocab.segment_words(tok_t, tok_s, sentences[:8], max_words=30, max_pieces=30)
  batch = {**seg, 'weights': np.ones(8, np.float32)}
  segmentation = mv.Segmentation(32, 6, 0.15, mv.VocabIds.of(tok_t), mv.VocabIds.of(tok_s))
  tx = optax.sgd(0.1)
  state = init_state(s_params, tx)
  step = mv.student_distill_step(student, teacher=dual, segmentation=segmentation,
                                 layer_map=(1, 2), hidden_weight=1.0, projection='down')
  new, metrics = step(state, dual_params, batch, jax.random.PRNGKey(0), tx=tx)
  assert float(metrics['hidden_loss']) > 0 and float(metrics['mlm_loss']) > 0
  assert s_params['projection'].shape == (32, 16)  # U [d_T, d_S] in the student's tree
  assert float(jnp.abs(new['params']['projection'] - s_params['projection']).max()) > 0
  emb = lambda p: p['bert']['embeddings']['word_embeddings']['embedding']
  assert float(jnp.abs(emb(new['params']) - emb(s_params)).max()) > 0
  # The teacher is an argument, not a parameter: the step updates exactly the
  # student's tree, and the teacher is left as it was.
  assert jax.tree.structure(new['params']) == jax.tree.structure(s_params)
  jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, b.shape), new['params'], s_params)
  jax.tree.map(np.testing.assert_array_equal, dual_params, teacher_before)
  # The hidden loss is the shared-projection MSE to that teacher's hidden states
  # (the Stage-I model reading the same all-student-vocabulary text), recomputed
  # here with the step's random streams.
  seg_rng, dropout_rng = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), 0))
  mixed = jax.device_get(segmentation(seg_rng, batch, 1.0))
  assert np.all(mixed['vocab_ids'][mixed['attention_mask'] > 0] == 1)
  t_hidden = dual.apply({'params': teacher_before}, mixed['input_ids'], mixed['vocab_ids'],
                        mixed['token_type_ids'], mixed['attention_mask'],
                        output_hidden_states=True)['hidden_states']
  out = student.apply({'params': s_params}, mixed['input_ids'], mixed['token_type_ids'],
                      mixed['attention_mask'], mixed['mlm_positions'], deterministic=False,
                      rngs={'dropout': dropout_rng})
  mask = mixed['attention_mask'].astype(np.float64)
  per_sequence = np.zeros(8)
  for l, m in ((1, 1), (2, 2)):
    diff = (np.asarray(t_hidden[m], np.float64) @ np.asarray(s_params['projection'], np.float64)
            - np.asarray(out['hidden_states'][l], np.float64))
    per_sequence += ((diff ** 2).mean(-1) * mask).sum(1) / mask.sum(1)
  used = mixed['mlm_weights'].sum(1) > 0
  np.testing.assert_allclose(float(metrics['hidden_loss']), per_sequence[used].mean(),
                             rtol=1e-4)


@pytest.mark.parametrize('projection', ['down', 'up'])
def test_stage2_student_starts_from_the_stage1_subspace(projection):
  """The Stage-II student's position and token-type tables are the teacher's on
  the transferred basis (extra rows stay its own), and its shared projection is
  the Stage-I up-projection ('up') or its transpose ('down')."""
  from kdjax.methods.mixed_vocab import pipeline as mixed_kd
  rng = np.random.default_rng(0)
  d_t, d_s = 6, 3
  basis = np.linalg.qr(rng.normal(size=(d_t, d_s)))[0].astype(np.float32)
  up = rng.normal(size=(d_s, d_t)).astype(np.float32)
  teacher = {'position_embeddings': {'embedding': rng.normal(size=(4, d_t))},
             'token_type_embeddings': {'embedding': rng.normal(size=(2, d_t))}}
  own_positions = rng.normal(size=(5, d_s)).astype(np.float32)
  s_params = {'bert': {'embeddings': {
      'position_embeddings': {'embedding': own_positions.copy()},
      'token_type_embeddings': {'embedding': rng.normal(size=(2, d_s)).astype(np.float32)},
      'word_embeddings': {'embedding': np.zeros((7, d_s), np.float32)}}},
      'projection': np.zeros((d_t, d_s) if projection == 'down' else (d_s, d_t), np.float32)}
  mixed_kd._transfer_to_student(s_params, teacher, basis, up, projection)
  emb = s_params['bert']['embeddings']
  positions = emb['position_embeddings']['embedding']
  np.testing.assert_allclose(positions[:4], teacher['position_embeddings']['embedding'] @ basis,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(positions[4:], own_positions[4:])
  np.testing.assert_allclose(emb['token_type_embeddings']['embedding'],
                             teacher['token_type_embeddings']['embedding'] @ basis,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(emb['word_embeddings']['embedding'], 0)
  np.testing.assert_array_equal(s_params['projection'], up if projection == 'up' else up.T)


def test_student_tokens_are_spelled_in_the_teacher_vocabulary(tokenizers):
  tok_t, tok_s = tokenizers
  ids, mask = vocab.teacher_pieces_of(tok_s, tok_t)
  t_vocab = tok_t.get_vocab()
  assert ids.shape == mask.shape == (len(tok_s), 8)
  for token, i in tok_s.get_vocab().items():
    pieces = tok_t.convert_ids_to_tokens(ids[i][mask[i] > 0].tolist())
    if token in t_vocab:  # the teacher has it: itself (specials and '##' pieces too)
      assert pieces == [token]
    elif pieces != ['[UNK]']:  # else the teacher's pieces spell the same characters
      assert ''.join(p.removeprefix('##') for p in pieces) == token.removeprefix('##')
  assert mask.sum(1).min() >= 1


def test_transferred_word_table_keeps_the_teachers_vectors():
  from kdjax import students
  rng = np.random.default_rng(0)
  words = rng.normal(size=(50, 12)).astype(np.float32) + 0.5  # a mean direction, like BERT's
  ids = np.array([[3, 0, 0], [4, 7, 9], [5, 6, 0]], np.int32)
  mask = np.array([[1, 0, 0], [1, 1, 1], [1, 1, 0]], np.float32)
  spelled = np.stack([words[3], words[[4, 7, 9]].mean(0), words[[5, 6]].mean(0)])
  table, basis = students.transferred_word_table(words, ids, mask, 12)  # full width: exact
  np.testing.assert_allclose(table @ basis.T, spelled, atol=1e-5)
  table, basis = students.transferred_word_table(words, ids, mask, 2)
  assert table.shape == (3, 2) and basis.shape == (12, 2)
  np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-5)
  # Rank 2 of 3 rows: the residual is the smallest singular value, the optimum.
  residual = np.linalg.norm(table @ basis.T - spelled)
  np.testing.assert_allclose(residual, np.linalg.svd(spelled, compute_uv=False)[-1], rtol=1e-4)
  with pytest.raises(Exception, match='width'):
    students.transferred_word_table(words, ids, mask, 13)


def test_quick_mixed_vocab_run(tmp_path, glue_dir, tiny_teacher_dir):
  """configs/mixed_vocab.py:quick with a tiny teacher: vocabulary, Stages I-III,
  HF export with the student's vocabulary; the baseline shares the teacher."""
  import json
  from transformers import AutoTokenizer
  from kdjax.methods.mixed_vocab import pipeline as mixed_kd
  from tests.conftest import load_config
  config = load_config('mixed_vocab', 'quick')
  config.data.glue_dir = glue_dir
  config.teacher.checkpoint = tiny_teacher_dir
  config.teacher.store_dir = str(tmp_path / 'teachers')
  config.student.hidden_size, config.student.num_heads = 16, 2
  config.student.intermediate_size, config.student.num_layers = 32, 2
  result = mixed_kd.run(config, str(tmp_path / 'mixed'))
  phases = {json.loads(line)['phase'] for line in open(tmp_path / 'mixed' / 'metrics.jsonl')}
  assert {'stage1_dual_mlm', 'stage2_student', 'student', 'teacher'} <= phases
  export = result['student']['export_dir']
  tok = AutoTokenizer.from_pretrained(export)
  assert len(tok) == result['student_vocab'] <= 1000
  assert result['student']['architecture']['vocab'] == len(tok)
  assert result['student']['disk_bytes'] < result['teacher']['disk_bytes']
  fp16 = result['student']['disk_bytes_fp16']
  assert 0.45 < fp16 / result['student']['disk_bytes'] < 0.55  # half the bytes, same tensors
  assert 'kept' in mixed_kd.format_table(result)
  config.mixed.pretrain, config.distill.alpha = False, 1.0
  base = mixed_kd.run(config, str(tmp_path / 'base'))
  assert base['teacher']['metrics'] == result['teacher']['metrics']
  base_phases = {json.loads(line)['phase'] for line in open(tmp_path / 'base' / 'metrics.jsonl')}
  assert 'stage1_dual_mlm' not in base_phases


def test_unknown_embedding_init_is_refused_before_any_work():
  from kdjax import config_check
  from kdjax.errors import KdjaxError
  from tests.conftest import load_config
  config = load_config('mixed_vocab', 'quick').to_dict()
  config_check.check(config)
  config['mixed']['embedding_init'] = 'pca'
  with pytest.raises(KdjaxError, match="mixed.embedding_init is 'pca'"):
    config_check.check(config)


def tiny_quick_config(glue_dir, teacher_dir, store_dir):
  """configs/mixed_vocab.py:quick with a tiny teacher and a tiny student."""
  from tests.conftest import load_config
  config = load_config('mixed_vocab', 'quick')
  config.data.glue_dir = glue_dir
  config.teacher.checkpoint = teacher_dir
  config.teacher.store_dir = store_dir
  config.student.hidden_size, config.student.num_heads = 16, 2
  config.student.intermediate_size, config.student.num_layers = 32, 2
  return config


@pytest.mark.parametrize('embedding_init', ['teacher', 'random'])
def test_control_arm_starts_from_the_teacher_derived_input_layer(
    tmp_path, glue_dir, tiny_teacher_dir, monkeypatch, embedding_init):
  """Without Stages I-II, `embedding_init=teacher` starts the task student from
  the input layer Stage I starts from (the spelled, reduced word table and the
  teacher's positions and token types on its basis); `random` keeps its own."""
  from kdjax.data.tokenize import load_tokenizer
  from kdjax.methods.mixed_vocab import pipeline as mixed_kd
  from kdjax.models.hf import load_hf_checkpoint
  from kdjax import students

  class Started(Exception):
    pass

  started = {}

  def first_step(run, name, start, *args, **kwargs):
    started['params'] = jax.device_get(start.state['params'])
    raise Started

  monkeypatch.setattr(mixed_kd, 'train_classifier', first_step)
  config = tiny_quick_config(glue_dir, tiny_teacher_dir, str(tmp_path / 'teachers'))
  config.mixed.pretrain, config.distill.alpha = False, 1.0
  config.mixed.embedding_init = embedding_init
  with pytest.raises(Started):
    mixed_kd.run(config, str(tmp_path / 'control'))
  vocab_dir, = (tmp_path / 'control').glob('student_vocab-*')
  teacher = load_hf_checkpoint(tiny_teacher_dir).encoder_params['embeddings']
  table, basis = students.transferred_word_table(
      np.asarray(teacher['word_embeddings']['embedding']),
      *vocab.teacher_pieces_of(load_tokenizer(str(vocab_dir)),
                               load_tokenizer(tiny_teacher_dir)), 16)
  emb = started['params']['bert']['embeddings']
  words = np.asarray(emb['word_embeddings']['embedding'])
  positions = np.asarray(emb['position_embeddings']['embedding'])
  teacher_positions = np.asarray(teacher['position_embeddings']['embedding']) @ basis
  assert words.shape == table.shape
  if embedding_init == 'teacher':
    np.testing.assert_allclose(words, table, rtol=1e-6)
    rows = len(teacher_positions)  # the tiny teacher has fewer positions than the student
    np.testing.assert_allclose(positions[:rows], teacher_positions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(emb['token_type_embeddings']['embedding']),
                               np.asarray(teacher['token_type_embeddings']['embedding']) @ basis,
                               rtol=1e-5, atol=1e-6)
  else:
    assert not np.allclose(words, table, atol=1e-3)
    assert not np.allclose(positions[:len(teacher_positions)], teacher_positions, atol=1e-3)


def test_a_run_is_reproduced_from_its_config_under_any_hash_seed(tmp_path, glue_dir,
                                                                 tiny_teacher_dir):
  """The same config in two processes with different PYTHONHASHSEED values (the
  per-process string-hash order that once changed the student vocabulary):
  the same vocabulary, bit-identical student weights, the same metrics."""
  import hashlib
  import json
  import subprocess
  import sys
  from tests.conftest import REPO
  # configs/mixed_vocab.py:quick, smaller still: every stage runs, in two
  # length buckets, with one evaluation per phase.
  overrides = [f'--config.data.glue_dir={glue_dir}',
               f'--config.teacher.checkpoint={tiny_teacher_dir}',
               '--config.data.max_train_examples=64', '--config.data.max_eval_examples=32',
               '--config.data.buckets=(16, 32)', '--config.student.hidden_size=16',
               '--config.student.intermediate_size=32', '--config.student.num_layers=2',
               '--config.stage1.steps=3', '--config.stage2.steps=3', '--config.eval_every=100',
               '--config.checkpoint_every=100', '--config.speed_repeats=1']

  def start(hash_seed: str) -> subprocess.Popen:
    env = {**os.environ, 'XLA_FLAGS': '', 'JAX_PLATFORMS': 'cpu',
           'PYTHONHASHSEED': hash_seed, 'KDJAX_COMPILATION_CACHE': 'off'}
    return subprocess.Popen(
        [sys.executable, '-m', 'kdjax.main', '--config', 'configs/mixed_vocab.py:quick',
         *overrides, '--workdir', str(tmp_path / f'hash{hash_seed}')],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

  def outcome(hash_seed: str, proc: subprocess.Popen) -> dict:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    workdir = tmp_path / f'hash{hash_seed}'
    summary = json.loads((workdir / 'summary.json').read_text())
    vocab_dir, = workdir.glob('student_vocab-*')
    weights = (workdir / 'export' / 'student' / 'model.safetensors').read_bytes()
    return {'vocab': (vocab_dir / 'vocab.txt').read_text(),
            'student_weights': hashlib.sha256(weights).hexdigest(),
            'student': summary['student']['metrics'], 'teacher': summary['teacher']['metrics'],
            'code_version': summary['code_version']}

  procs = {seed: start(seed) for seed in ('1', '2')}  # side by side: half the wall time
  first, second = (outcome(seed, proc) for seed, proc in procs.items())
  assert first['vocab'] == second['vocab']
  assert first['student_weights'] == second['student_weights']
  assert first['student'] == second['student'] and first['teacher'] == second['teacher']
  assert len(first['code_version']['commit']) == 40  # a run records the code it ran


def test_default_student_is_as_deep_as_the_teacher_and_under_7_mb(minilm_dir):
  """configs/mixed_vocab.py's student: the teacher's depth, and with a full
  `mixed.vocab_size` vocabulary under 7 MB of fp32 weights (classifier included)."""
  from transformers import AutoConfig
  from kdjax.methods.mixed_vocab import pipeline as mixed_kd
  from kdjax.models.heads import BertClassifier
  from tests.conftest import load_config
  config = load_config('mixed_vocab')
  assert config.student.num_layers == AutoConfig.from_pretrained(minilm_dir).num_hidden_layers
  model = BertClassifier(mixed_kd.student_bert_config(config, config.mixed.vocab_size), 5)
  ids = np.zeros((1, 8), np.int32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), ids, ids, np.ones_like(ids)))
  params = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))
  assert 4 * params < 7e6, params


def test_experiment_table_pairs_the_arms_seed_by_seed():
  """experiments/mixed_vocab.py: per-seed paired differences of the named arms,
  the majority baseline and the size and kept-fraction verdicts, from summaries."""
  from tests.conftest import load_experiment
  experiment = load_experiment('mixed_vocab')
  scores = {'task_random': [0.70, 0.72, 0.71], 'task_teacher': [0.74, 0.75, 0.745],
            'stages_1_2': [0.75, 0.74, 0.755], 'stages_1_3': [0.78, 0.77, 0.79]}

  def summary(arm, value):
    return {'comparison': {'primary_metric': 'accuracy', 'kept_fraction': value / 0.84,
                           'speedup': 9.0},
            'teacher': {'metrics': {'accuracy': 0.84}, 'params': 22_713_986,
                        'disk_bytes': 90_870_000, 'examples_per_s': 40.0,
                        'architecture': {'vocab': 30522}},
            'student': {'metrics': {'accuracy': value}, 'params': 1_665_922,
                        'disk_bytes': 6_675_472, 'disk_bytes_fp16': 3_340_000,
                        'examples_per_s': 360.0, 'architecture': {'vocab': 5000}},
            'majority': {'accuracy': 0.509}, 'eval_split': 'dev',
            'data_sizes': {'train': 4000, 'dev': 872}, 'corpus_texts': 20000,
            'student_vocab': 5000}

  runs = {'sst2': {arm: [summary(arm, v) for v in values] for arm, values in scores.items()}}
  table = experiment.build_table(runs)['sst2']
  np.testing.assert_allclose(table['paired']['stages_1_2 - task_teacher']['per_seed'],
                             [0.01, -0.01, 0.01], atol=1e-9)
  np.testing.assert_allclose(table['paired']['stages_1_3 - task_teacher']['per_seed'],
                             [0.04, 0.02, 0.045], atol=1e-9)
  np.testing.assert_allclose(table['paired']['task_teacher - task_random']['per_seed'],
                             [0.04, 0.03, 0.035], atol=1e-9)
  assert table['paired']['stages_1_2 - task_teacher']['wins'] == 2
  assert table['majority'] == 0.509 and table['rows']['task_random']['above_majority']
  lines = experiment.reading({'sst2': table})
  # Only Stages I-III keeps >= 90% of 0.84 (0.756) on average.
  assert lines[0].split(' Kept')[0] == ("A student under 7 MB keeps >= 90% of the teacher's "
                                        "metric on every task: Stages I-III (task KD).")


def test_experiment_keeps_saved_arms_and_compares_the_rerun_ones():
  """experiments/mixed_vocab.py --keep-saved: arms not run now come from the
  saved record, an arm in both is compared seed by seed, the table names every
  code version it mixes, and a record of other config values is refused."""
  from tests.conftest import load_config, load_experiment
  experiment = load_experiment('mixed_vocab')
  config = load_config('mixed_vocab').to_dict()

  def summary(value, commit):
    return {'comparison': {'primary_metric': 'pearson'}, 'code_version': {'commit': commit},
            'student': {'metrics': {'pearson': value}}}

  saved = {'seeds': [0, 1], 'config': config,
           'runs': {'stsb': {'task_random': [summary(0.10, 'old'), summary(0.12, 'old')],
                             'stages_1_3': [summary(0.20, 'old'), summary(0.30, 'old')]}}}
  now = {'stsb': {'stages_1_3': [summary(0.20, 'new'), summary(0.25, 'new')],
                  'stages_1_3_transfer': [summary(0.40, 'new'), summary(0.45, 'new')]}}
  merged, reproduction = experiment.with_saved_arms(now, saved, [0, 1], config)
  assert list(merged['stsb']) == ['task_random', 'stages_1_3', 'stages_1_3_transfer']
  assert merged['stsb']['stages_1_3'] is now['stsb']['stages_1_3']  # the rerun wins
  check = reproduction['stsb']['stages_1_3']
  np.testing.assert_allclose(check['diffs'], [0.0, -0.05], atol=1e-12)
  assert (check['rerun_code'], check['saved_code']) == (['new'], ['old'])
  assert experiment.code_versions(merged) == {'old': ['task_random'],
                                              'new': ['stages_1_3', 'stages_1_3_transfer']}
  # Runs that only resumed the saved ones are no check; the saved record's checks carry over.
  resumed = {'stsb': {'stages_1_3': saved['runs']['stsb']['stages_1_3']}}
  assert experiment.with_saved_arms(resumed, saved, [0, 1], config)[1] == {}
  later = {**saved, 'reproduction': reproduction,
           'runs': {'stsb': {**saved['runs']['stsb'], **now['stsb']}}}
  resumed_later = {'stsb': {'stages_1_3': now['stsb']['stages_1_3']}}
  assert experiment.with_saved_arms(resumed_later, later, [0, 1], config)[1] == reproduction
  with pytest.raises(SystemExit, match='seeds'):
    experiment.with_saved_arms(now, saved, [0, 1, 2], config)
  changed = load_config('mixed_vocab')
  changed.stage1.steps += 1
  with pytest.raises(SystemExit, match='stage1.steps'):
    experiment.with_saved_arms(now, saved, [0, 1], changed.to_dict())
  # A run stopped under one commit and finished under another counts for both.
  two = summary(0.25, 'new')
  two['trained_by'] = {'student': [{'from_step': 0, 'code_version': {'commit': 'older'}},
                                   {'from_step': 9, 'code_version': {'commit': 'new'}}]}
  mixed = {'stsb': {'stages_1_3': [summary(0.20, 'new'), two]}}
  check = experiment.with_saved_arms(mixed, saved, [0, 1], config)[1]['stsb']['stages_1_3']
  assert check['rerun_code'] == ['new', 'older']
  assert experiment.code_versions(mixed) == {'new': ['stages_1_3'], 'older': ['stages_1_3']}


def test_experiment_arm_on_some_tasks_keeps_the_other_tasks_saved_runs():
  """experiments/mixed_vocab.py --tasks stsb --arms stages_1_3_transfer16 --keep-saved:
  the saved tasks stay in the record in their order, the new arm appears on
  the task it ran on only, its paired difference is read for that task, and
  the >= 90% verdict is given per task from each task's best small student."""
  from tests.conftest import load_config, load_experiment
  experiment = load_experiment('mixed_vocab')
  config = load_config('mixed_vocab').to_dict()

  def summary(metric, value, teacher):
    return {'comparison': {'primary_metric': metric, 'kept_fraction': value / teacher,
                           'speedup': 8.0},
            'code_version': {'commit': 'c'},
            'teacher': {'metrics': {metric: teacher}, 'params': 22_713_601,
                        'disk_bytes': 90_866_412, 'examples_per_s': 90.0,
                        'architecture': {'vocab': 30522}},
            'student': {'metrics': {metric: value}, 'params': 1_665_793,
                        'disk_bytes': 6_674_956, 'disk_bytes_fp16': 3_343_370,
                        'examples_per_s': 800.0, 'architecture': {'vocab': 5000}},
            'majority': {metric: 0.5 if metric == 'accuracy' else 0.0}, 'eval_split': 'dev',
            'data_sizes': {'train': 4000, 'dev': 872}, 'corpus_texts': 20000,
            'student_vocab': 5000}

  sst2 = {'stages_1_3': [summary('accuracy', v, 0.84) for v in (0.77, 0.78)],
          'stages_1_3_transfer': [summary('accuracy', v, 0.84) for v in (0.78, 0.79)]}
  stsb = {'stages_1_3': [summary('pearson', v, 0.76) for v in (0.14, 0.15)],
          'stages_1_3_transfer': [summary('pearson', v, 0.76) for v in (0.29, 0.31)]}
  # as read back from the JSON file: tasks key-sorted, their order in 'tasks'
  saved = {'seeds': [0, 1], 'config': config, 'tasks': ['sst2', 'stsb'], 'command': 'first',
           'runs': {'stsb': stsb, 'sst2': sst2}}
  now = {'stsb': {'stages_1_3_transfer16': [summary('pearson', v, 0.76) for v in (0.45, 0.50)]}}
  merged, reproduction = experiment.with_saved_arms(now, saved, [0, 1], config)
  assert list(merged) == ['sst2', 'stsb'] and reproduction == {}
  assert merged['sst2'] == sst2
  assert list(merged['stsb']) == ['stages_1_3', 'stages_1_3_transfer', 'stages_1_3_transfer16']
  table = experiment.build_table(merged)
  assert 'stages_1_3_transfer16' not in table['sst2']['rows']
  np.testing.assert_allclose(
      table['stsb']['paired']['stages_1_3_transfer16 - stages_1_3_transfer']['per_seed'],
      [0.16, 0.19], atol=1e-9)
  lines = experiment.reading(table)
  assert lines[0].startswith("No one arm's student under 7 MB keeps >= 90%")
  best = next(line for line in lines if line.startswith('Best student'))
  assert 'stsb Stages I-III, task KD with a transfer set (x16) 62.5%' in best
  assert best.endswith('below 90% on stsb.')
  assert any(line.startswith('Stages I-III, task KD with a transfer set (x16) minus') and
             'stsb +0.1750' in line and 'sst2' not in line for line in lines)
  assert experiment.arms_named(table).endswith("'Stages I-III, task KD with a transfer set "
                                               "(x16)' (stsb only)")
