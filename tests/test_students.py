"""Student initialisation and schedules: `initialise_encoder` in each mode
(values checked exactly), a task head initialised alone as in the full model, a teacher_layers student reproducing the teacher's
hidden states, `default_layer_map`, `rlkd.holdout_split` and the p_SV ramp
`mixed_vocab.p_student_at`."""
import dataclasses

import jax
import numpy as np
import pytest

from kdjax import students
from kdjax.data.tasks import Examples
from kdjax.errors import KdjaxError
from kdjax.methods.mixed_vocab import pieces as mixed_vocab
from kdjax.methods.rl_kd import pipeline as rlkd
from kdjax.models.bert import BertConfig, BertEncoder, init_params
from kdjax.models.heads import BertClassifier, init_head

TEACHER = BertConfig(vocab_size=200, hidden_size=32, num_layers=3, num_heads=4,
                     intermediate_size=64, max_position_embeddings=32)


@pytest.fixture(scope='module')
def teacher_bert():
  return jax.tree.map(np.asarray, init_params(BertEncoder(TEACHER), jax.random.PRNGKey(0)))


def fresh_student(config, seed=1):
  return jax.tree.map(np.asarray, init_params(BertEncoder(config), jax.random.PRNGKey(seed)))


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


# ------------------------------------------------------------------ task heads

@pytest.mark.parametrize('num_labels', [1, 3])
def test_head_initialised_alone_equals_the_full_models_head(num_labels):
  # Teachers get a fresh head this way without compiling their encoder's init.
  full = init_params(BertClassifier(TEACHER, num_labels), jax.random.PRNGKey(5))
  assert_trees_equal(init_head(TEACHER, num_labels, 5),
                     jax.tree.map(np.asarray, full['classifier']))
  other_seed = init_head(TEACHER, num_labels, 6)['dense']['kernel']
  assert not np.array_equal(other_seed, np.asarray(full['classifier']['dense']['kernel']))


# ------------------------------------------------------------------ initialise_encoder

def test_random_init_keeps_the_students_own_params(teacher_bert):
  config = dataclasses.replace(TEACHER, hidden_size=16, num_heads=2, intermediate_size=32,
                               num_layers=2)
  student = fresh_student(config)
  got = students.initialise_encoder(student, config, 'random', TEACHER, teacher_bert)
  assert_trees_equal(got, student)


def test_teacher_embeddings_are_the_teachers_tables_on_their_principal_directions(
    teacher_bert):
  """Word table = centred teacher word table times an orthonormal basis of its
  top principal directions; positions and token types use the same basis,
  uncentred. Layers stay the student's own."""
  width = 16
  config = dataclasses.replace(TEACHER, hidden_size=width, num_heads=2, intermediate_size=32,
                               num_layers=2)
  student = fresh_student(config)
  got = students.initialise_encoder(student, config, 'teacher_embeddings', TEACHER,
                                    teacher_bert)
  emb_t = {k: np.asarray(v['embedding'], np.float64)
           for k, v in teacher_bert['embeddings'].items() if 'embedding' in v}
  words = emb_t['word_embeddings']
  centred = words - words.mean(0)
  table = np.asarray(got['embeddings']['word_embeddings']['embedding'], np.float64)
  assert table.shape == (TEACHER.vocab_size, width)
  # The basis that produced the table, read back from it (sign-free check).
  basis = np.linalg.lstsq(centred, table, rcond=None)[0]
  np.testing.assert_allclose(centred @ basis, table, atol=1e-5)
  np.testing.assert_allclose(basis.T @ basis, np.eye(width), atol=1e-4)
  # Principal directions: the column energies are the top squared singular values.
  s = np.linalg.svd(centred, compute_uv=False)
  np.testing.assert_allclose(table.T @ table, np.diag(s[:width] ** 2), rtol=1e-4,
                             atol=1e-4 * s[0] ** 2)
  for name in ('position_embeddings', 'token_type_embeddings'):
    np.testing.assert_allclose(got['embeddings'][name]['embedding'], emb_t[name] @ basis,
                               atol=1e-5)
  # The embedding LayerNorm and every layer are the student's own.
  assert_trees_equal(got['embeddings']['LayerNorm'], student['embeddings']['LayerNorm'])
  for i in range(2):
    assert_trees_equal(got[f'layer_{i}'], student[f'layer_{i}'])
  wide = dataclasses.replace(TEACHER, hidden_size=64)
  with pytest.raises(KdjaxError, match='hidden_size'):
    students.initialise_encoder(fresh_student(wide), wide, 'teacher_embeddings', TEACHER,
                                teacher_bert)


def test_teacher_embeddings_at_full_width_keep_the_word_geometry(teacher_bert):
  """At the teacher's width the projection is a rotation: distances between word
  vectors are the teacher's."""
  got = students.initialise_encoder(fresh_student(TEACHER), TEACHER, 'teacher_embeddings',
                                    TEACHER, teacher_bert)
  dist = lambda t: np.linalg.norm(t[:20, None] - t[None, :20], axis=-1)
  np.testing.assert_allclose(dist(got['embeddings']['word_embeddings']['embedding']),
                             dist(teacher_bert['embeddings']['word_embeddings']['embedding']),
                             atol=1e-5)


def test_teacher_layers_copies_the_named_layers(teacher_bert):
  config = dataclasses.replace(TEACHER, num_layers=2)
  student = fresh_student(config)
  got = students.initialise_encoder(student, config, 'teacher_layers', TEACHER, teacher_bert,
                                    (2, 0))
  assert_trees_equal(got['layer_0'], teacher_bert['layer_2'])
  assert_trees_equal(got['layer_1'], teacher_bert['layer_0'])
  assert_trees_equal(got['embeddings'], teacher_bert['embeddings'])
  assert_trees_equal(got['pooler'], teacher_bert['pooler'])
  assert set(got) == set(student)
  # Own copies: changing the teacher afterwards leaves the student as it was.
  kept = np.array(got['layer_0']['output']['kernel'])
  teacher_copy = jax.tree.map(np.array, teacher_bert)
  got2 = students.initialise_encoder(student, config, 'teacher_layers', TEACHER,
                                     teacher_copy, (2, 0))
  teacher_copy['layer_2']['output']['kernel'] += 1.0
  np.testing.assert_array_equal(got2['layer_0']['output']['kernel'], kept)
  # Without a list: the default layers, default_layer_map(2, 3) = (0, 2).
  default = students.initialise_encoder(student, config, 'teacher_layers', TEACHER,
                                        teacher_bert)
  assert_trees_equal(default['layer_0'], teacher_bert['layer_0'])
  assert_trees_equal(default['layer_1'], teacher_bert['layer_2'])


@pytest.mark.parametrize('layers,change', [((0, 3), {}), ((0,), {}), ((0, 1),
                                           {'hidden_size': 16, 'num_heads': 2}),
                                           ((0, 1), {'intermediate_size': 32})])
def test_teacher_layers_refuses_what_cannot_be_copied(teacher_bert, layers, change):
  config = dataclasses.replace(TEACHER, num_layers=2, **change)
  with pytest.raises(KdjaxError, match='teacher_layers'):
    students.initialise_encoder(fresh_student(config), config, 'teacher_layers', TEACHER,
                                teacher_bert, layers)


def test_unknown_init_is_refused(teacher_bert):
  with pytest.raises(KdjaxError, match="'pca'"):
    students.initialise_encoder(fresh_student(TEACHER), TEACHER, 'pca', TEACHER, teacher_bert)


def test_teacher_layers_student_reproduces_the_teachers_hidden_states(teacher_bert):
  """Layers (0, 1) of a 3-layer teacher: the student's hidden states 0..2 are
  the teacher's 0..2."""
  config = dataclasses.replace(TEACHER, num_layers=2)
  params = students.initialise_encoder(fresh_student(config), config, 'teacher_layers',
                                       TEACHER, teacher_bert, (0, 1))
  rng = np.random.default_rng(0)
  ids = rng.integers(1, TEACHER.vocab_size, (3, 12)).astype(np.int32)
  types = (np.arange(12)[None] >= 6).astype(np.int32).repeat(3, 0)
  mask = (np.arange(12)[None] < np.array([[12], [9], [5]])).astype(np.int32)
  run = lambda cfg, p: BertEncoder(cfg).apply({'params': p}, ids, types, mask,
                                             output_hidden_states=True)['hidden_states']
  t_hidden, s_hidden = run(TEACHER, teacher_bert), run(config, params)
  assert len(s_hidden) == 3
  for i in range(3):
    np.testing.assert_allclose(s_hidden[i], t_hidden[i], atol=1e-5)
  # ... and a student of other layers does not.
  other = students.initialise_encoder(fresh_student(config), config, 'teacher_layers',
                                      TEACHER, teacher_bert, (1, 2))
  assert np.abs(np.asarray(run(config, other)[1]) - np.asarray(t_hidden[1])).max() > 1e-3


@pytest.mark.parametrize('choice,expected', [('first', (0, 1)), ('evenly_spaced', (0, 2))])
def test_student_from_chosen_layers_reproduces_those_layers(teacher_bert, choice, expected):
  """`student.layer_choice` picks the teacher layers (first k, as patient KD;
  or evenly spaced, ending with the last); each student layer then maps the
  teacher's input to that layer onto the teacher's output of it, and the
  embeddings are the teacher's."""
  from kdjax.models.bert import Layer
  config = dataclasses.replace(TEACHER, num_layers=2)
  params = students.initialise_encoder(fresh_student(config), config, 'teacher_layers',
                                       TEACHER, teacher_bert, (), choice)
  rng = np.random.default_rng(1)
  ids = rng.integers(1, TEACHER.vocab_size, (2, 10)).astype(np.int32)
  types = np.zeros_like(ids)
  mask = (np.arange(10)[None] < np.array([[10], [6]])).astype(np.int32)
  run = lambda cfg, p: BertEncoder(cfg).apply({'params': p}, ids, types, mask,
                                             output_hidden_states=True)['hidden_states']
  t_hidden, s_hidden = run(TEACHER, teacher_bert), run(config, params)
  np.testing.assert_allclose(s_hidden[0], t_hidden[0], atol=1e-6)
  bias = np.where(mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
  for i, t in enumerate(expected):
    out, _ = Layer(config).apply({'params': params[f'layer_{i}']}, t_hidden[t], bias, True)
    np.testing.assert_allclose(out, t_hidden[t + 1], atol=1e-5)
  if choice == 'first':  # the bottom layers: the whole stack is the teacher's bottom
    for i in range(3):
      np.testing.assert_allclose(s_hidden[i], t_hidden[i], atol=1e-5)


def test_rl_kd_student_is_the_first_three_pretrained_layers():
  """configs/rl_kd.py: BERT3 as patient KD builds it, at the teacher's width."""
  from tests.conftest import load_config
  s = load_config('rl_kd').student
  assert (s.init, s.layer_choice, s.num_layers, s.hidden_size) == (
      'teacher_layers', 'first', 3, 384)
  assert students.chosen_layers(s.layer_choice, s.num_layers, 6) == (0, 1, 2)


# ------------------------------------------------------------------ default_layer_map

@pytest.mark.parametrize('num_student,num_teacher,expected', [
    (1, 6, (5,)), (2, 6, (2, 5)), (3, 6, (1, 3, 5)), (6, 6, (0, 1, 2, 3, 4, 5)),
    (2, 12, (5, 11)), (3, 12, (3, 7, 11)), (4, 12, (2, 5, 8, 11)), (1, 1, (0,)),
])
def test_default_layer_map_hand_values(num_student, num_teacher, expected):
  """Every (T/S)-th teacher layer, the last one included."""
  assert students.default_layer_map(num_student, num_teacher) == expected


# ------------------------------------------------------------------ holdout_split

def labelled(labels, regression=False):
  labels = np.asarray(labels, np.float32 if regression else np.int32)
  return Examples([f'text {i}' for i in range(len(labels))],
                  [f'pair {i}' for i in range(len(labels))], labels)


def texts(examples):
  return [int(t.split()[1]) for t in examples.texts_a]


def test_holdout_split_is_stratified_disjoint_and_covering():
  labels = [0] * 60 + [1] * 30 + [2] * 10
  examples = labelled(np.random.default_rng(0).permutation(labels))
  train, held = rlkd.holdout_split(examples, 0.2, seed=3, regression=False)
  assert len(held) == 20 and len(train) == 80
  # Each class keeps its share: 12 / 6 / 2 held out.
  assert np.bincount(held.labels, minlength=3).tolist() == [12, 6, 2]
  assert np.bincount(train.labels, minlength=3).tolist() == [48, 24, 8]
  a, b = texts(train), texts(held)
  assert not set(a) & set(b) and sorted(a + b) == list(range(100))
  # Rows stay whole: text, pair and label of one example travel together.
  for part in (train, held):
    for text, pair, label in zip(part.texts_a, part.texts_b, part.labels):
      i = int(text.split()[1])
      assert pair == f'pair {i}' and label == examples.labels[i]


def test_holdout_split_is_seeded():
  examples = labelled([0, 1] * 50)
  first = rlkd.holdout_split(examples, 0.3, seed=5, regression=False)
  again = rlkd.holdout_split(examples, 0.3, seed=5, regression=False)
  other = rlkd.holdout_split(examples, 0.3, seed=6, regression=False)
  assert texts(first[1]) == texts(again[1]) and texts(first[0]) == texts(again[0])
  assert texts(first[1]) != texts(other[1])


def test_holdout_split_of_scores():
  scores = np.linspace(0, 5, 40)
  examples = labelled(scores, regression=True)
  train, held = rlkd.holdout_split(examples, 0.25, seed=0, regression=True)
  assert len(held) == 10 and len(train) == 30
  a, b = texts(train), texts(held)
  assert not set(a) & set(b) and sorted(a + b) == list(range(40))
  np.testing.assert_array_equal(held.labels, scores[b].astype(np.float32))
  again = rlkd.holdout_split(examples, 0.25, seed=0, regression=True)
  assert texts(again[1]) == b and texts(rlkd.holdout_split(examples, 0.25, 1, True)[1]) != b


def test_holdout_split_without_or_with_too_much_held_out():
  examples = labelled([0, 1] * 10)
  train, held = rlkd.holdout_split(examples, 0.0, seed=0, regression=False)
  assert held is None and train is examples
  for fraction in (1.0, 1.5):
    with pytest.raises(KdjaxError, match='heldout_fraction'):
      rlkd.holdout_split(examples, fraction, seed=0, regression=False)


# ------------------------------------------------------------------ p_student_at

@pytest.mark.parametrize('step,expected', [(0, 0.0), (10, 0.15), (20, 0.3), (25, 0.375),
                                           (40, 0.6), (41, 0.6), (100, 0.6)])
def test_p_student_ramps_linearly_to_final(step, expected):
  """0.6 final over the first 40 % of 100 steps."""
  got = mixed_vocab.p_student_at(step, 100, 0.6, 0.4)
  np.testing.assert_allclose(float(got), expected, rtol=1e-6, atol=1e-7)


def test_p_student_without_a_ramp_is_final_from_the_start():
  for step in (0, 1, 50):
    np.testing.assert_allclose(float(mixed_vocab.p_student_at(step, 100, 0.5, 0.0)), 0.5)
  # Also under jit, with a traced step.
  ramp = jax.jit(lambda s: mixed_vocab.p_student_at(s, 10, 0.8, 0.5))
  np.testing.assert_allclose([float(ramp(s)) for s in (0, 1, 5, 9)], [0.0, 0.16, 0.8, 0.8],
                             rtol=1e-6)
