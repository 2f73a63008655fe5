"""Transfer sets (kdjax/data/augment.py): perturbed copies of the training
examples, their statistics, determinism and pairing, the teacher's answers as
labels, and their arrival in the mixed-vocabulary student's training arrays."""

import numpy as np
import pytest

from kdjax.data import augment
from kdjax.data.tasks import Examples
from kdjax.errors import KdjaxError

PAIRS = Examples(['the cat sat on the mat', 'a dog ran in the park', 'rain fell all day long'],
                 ['a cat was on a mat', 'the dog was running', 'it rained the whole day'],
                 np.array([4.2, 3.1, 4.8], np.float32), 'train.tsv')


def perturbation(copies=2, mask=0.0, replace=0.0, repair=0.0):
  return augment.Perturbation(copies, mask, replace, repair)


def test_unperturbed_copies_repeat_the_examples_copy_by_copy():
  out = augment.transfer_set(PAIRS, perturbation(copies=2), seed=0)
  assert out.texts_a == PAIRS.texts_a * 2 and out.texts_b == PAIRS.texts_b * 2
  assert out.labels.shape == (6,) and out.labels.dtype == np.float32
  assert 'transfer set' in out.origin


def test_mask_and_replace_shares_follow_their_probabilities():
  rng = np.random.default_rng(0)
  text = ' '.join(f'w{i}' for i in range(20000))
  out = augment.perturb_words(text, rng, ['zz'], mask_prob=0.15, replace_prob=0.1,
                              mask_token='[MASK]').split()
  assert len(out) == 20000
  assert abs(out.count('[MASK]') / 20000 - 0.15) < 0.01
  assert abs(out.count('zz') / 20000 - 0.10) < 0.01
  kept = [w for w in out if w not in ('[MASK]', 'zz')]
  assert set(kept) <= set(text.split())


def test_replacements_come_from_the_training_words():
  out = augment.transfer_set(PAIRS, perturbation(copies=3, replace=1.0), seed=1)
  words = {w for t in PAIRS.texts_a + PAIRS.texts_b for w in t.split()}
  assert {w for t in out.texts_a + out.texts_b for w in t.split()} <= words
  assert out.texts_a != PAIRS.texts_a * 3  # every word was redrawn
  assert [len(t.split()) for t in out.texts_a] == [len(t.split()) for t in PAIRS.texts_a] * 3


def test_a_transfer_set_is_a_pure_function_of_its_seed():
  p = perturbation(copies=4, mask=0.2, replace=0.2, repair=0.5)
  first, again = (augment.transfer_set(PAIRS, p, seed=3) for _ in range(2))
  other = augment.transfer_set(PAIRS, p, seed=4)
  assert (first.texts_a, first.texts_b) == (again.texts_a, again.texts_b)
  assert (first.texts_a, first.texts_b) != (other.texts_a, other.texts_b)


def test_repairing_takes_second_texts_from_other_examples():
  many = Examples([f'a{i}' for i in range(50)], [f'b{i}' for i in range(50)],
                  np.zeros(50, np.float32))
  kept = augment.transfer_set(many, perturbation(copies=2, repair=0.0), seed=0)
  assert all(a[1:] == b[1:] for a, b in zip(kept.texts_a, kept.texts_b))
  mixed = augment.transfer_set(many, perturbation(copies=2, repair=1.0), seed=0)
  assert set(mixed.texts_b) <= set(many.texts_b)
  own = sum(a[1:] == b[1:] for a, b in zip(mixed.texts_a, mixed.texts_b))
  assert own < 10  # 100 draws of 50 partners: about 2 keep their own


def test_single_texts_have_no_second_text():
  single = Examples(['good film', 'bad film'], None, np.array([1, 0], np.int32))
  out = augment.transfer_set(single, perturbation(copies=3, mask=0.5, repair=1.0), seed=0)
  assert out.texts_b is None and len(out) == 6 and out.labels.dtype == np.int32


def test_teacher_labels_are_its_class_or_its_score():
  logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]], np.float32)
  np.testing.assert_array_equal(augment.teacher_labels(logits, regression=False), [1, 0])
  np.testing.assert_allclose(augment.teacher_labels(np.array([[2.5], [0.5]]), True), [2.5, 0.5])


def test_transfer_rows_follow_the_training_rows():
  train = {'input_ids': np.ones((2, 4), np.int32), 'labels': np.array([1, 0], np.int32)}
  transfer = {'input_ids': np.zeros((3, 4), np.int32), 'labels': np.array([2, 2, 1])}
  both = augment.with_transfer_set(train, transfer)
  np.testing.assert_array_equal(both['labels'], [1, 0, 2, 2, 1])
  assert both['labels'].dtype == np.int32 and both['input_ids'].shape == (5, 4)
  with pytest.raises(KdjaxError, match='columns'):
    augment.with_transfer_set(train, {'labels': transfer['labels']})


def test_mask_and_replace_together_may_not_exceed_one():
  from ml_collections import ConfigDict
  section = ConfigDict({'augment_copies': 1, 'augment_mask_prob': 0.6,
                        'augment_replace_prob': 0.5, 'augment_repair_prob': 0.0})
  with pytest.raises(KdjaxError, match='must be <= 1'):
    augment.perturbation_of(section)


def test_the_mask_token_reaches_both_vocabularies_as_their_mask(minilm_dir, tmp_path):
  """The copies are written once as text; the teacher's and the student's
  tokenizers must both read the mask word as their [MASK] token."""
  from transformers import AutoTokenizer
  from kdjax.data import vocab
  teacher = AutoTokenizer.from_pretrained(minilm_dir)
  student = AutoTokenizer.from_pretrained(
      vocab.train_wordpiece(PAIRS.texts_a * 20 + PAIRS.texts_b * 20, 200, str(tmp_path / 'v')))
  p = perturbation(copies=2, mask=0.5)
  transfer = augment.encoded_transfer_set(PAIRS, p, 0, teacher, student, 32)
  # a stand-in teacher whose score is the number of [MASK]s it reads
  scores = (transfer.teacher_arrays['input_ids'] == teacher.mask_token_id).sum(-1, keepdims=True)
  arrays = augment.labelled(transfer, scores, regression=True)
  student_masks = (arrays['input_ids'] == student.mask_token_id).sum(-1)
  words = [(a + ' ' + b).split().count('[MASK]')
           for a, b in zip(transfer.examples.texts_a, transfer.examples.texts_b)]
  assert sum(words) > 0
  np.testing.assert_array_equal(student_masks, words)
  np.testing.assert_array_equal(arrays['labels'], words)  # the teacher's answers
  assert arrays['teacher_logits'].shape == (6, 1)


def test_several_teachers_answer_by_their_weighted_mean():
  # teacher 0 says class 0 firmly, teacher 1 says class 1 mildly
  logits = np.array([[[4.0, 0.0], [0.0, 1.0]]])
  assert augment.teacher_labels(logits, False, (0.5, 0.5))[0] == 0
  assert augment.teacher_labels(logits, False, (0.05, 0.95))[0] == 1
  scores = np.array([[[1.0], [3.0]], [[2.0], [4.0]]])
  np.testing.assert_allclose(augment.teacher_labels(scores, True), [2.0, 3.0])
  np.testing.assert_allclose(augment.teacher_labels(scores, True, (3.0, 1.0)), [1.5, 2.5])


def test_mixed_vocab_student_trains_on_the_teacher_labelled_copies(
    tmp_path, glue_dir, tiny_teacher_dir, monkeypatch):
  """With distill.augment_copies = 2, Stage III's arrays are the training rows
  followed by two copies of each, labelled with the teacher's own answers."""
  from kdjax.methods.mixed_vocab import pipeline as mixed_kd
  from tests.test_mixed_vocab import tiny_quick_config

  class Started(Exception):
    pass

  seen = {}

  def first_step(run, name, start, arrays, *args, **kwargs):
    if name != 'student':  # the teacher trains as usual
      return train_classifier(run, name, start, arrays, *args, **kwargs)
    seen.update(arrays)
    raise Started

  train_classifier = mixed_kd.train_classifier
  monkeypatch.setattr(mixed_kd, 'train_classifier', first_step)
  config = tiny_quick_config(glue_dir, tiny_teacher_dir, str(tmp_path / 'teachers'))
  config.mixed.pretrain, config.distill.alpha = False, 0.5
  config.distill.augment_copies, config.distill.augment_mask_prob = 2, 0.2
  with pytest.raises(Started):
    mixed_kd.run(config, str(tmp_path / 'aug'))
  n = config.data.max_train_examples
  assert len(seen['labels']) == 3 * n and seen['teacher_logits'].shape == (3 * n, 2)
  answers = np.argmax(seen['teacher_logits'][n:], axis=-1)
  np.testing.assert_array_equal(seen['labels'][n:], answers)
  assert not np.array_equal(seen['input_ids'][n:2 * n], seen['input_ids'][:n])  # perturbed


def test_a_transfer_set_without_task_kd_is_refused(tmp_path, glue_dir, tiny_teacher_dir):
  from kdjax.methods.mixed_vocab import pipeline as mixed_kd
  from tests.test_mixed_vocab import tiny_quick_config
  config = tiny_quick_config(glue_dir, tiny_teacher_dir, str(tmp_path / 'teachers'))
  config.distill.alpha, config.distill.augment_copies = 1.0, 1
  with pytest.raises(KdjaxError, match='needs KD'):
    mixed_kd.run(config, str(tmp_path / 'refused'))
  assert not (tmp_path / 'refused').exists()  # refused before any work


def test_plain_kd_trains_on_a_transfer_set_of_two_teachers(tmp_path, tiny_teacher_dir):
  """Plain KD with two teachers and distill.augment_copies = 2: the student's
  schedule covers the training rows and both copies of each."""
  import json
  from kdjax.methods.kd import pipeline as kd
  from kdjax.steps import steps_for
  from tests.test_e2e import tiny_config
  config = tiny_config(tiny_teacher_dir)
  config.teacher.checkpoint = ''
  config.teacher.checkpoints = (tiny_teacher_dir, tiny_teacher_dir)
  config.distill.augment_copies = 2
  summary = kd.run(config, str(tmp_path / 'kd'))
  n = summary['data_sizes']['train']
  assert summary['transfer_set'] == 2 * n
  records = [json.loads(line) for line in open(tmp_path / 'kd' / 'metrics.jsonl')]
  last = max(r['step'] for r in records if r['phase'] == 'student')
  assert last == steps_for(3 * n, config.distill.batch_size, config.distill.epochs,
                           bucketed=bool(config.data.buckets))
