"""Plain KD's layer-wise losses and several teachers: the train steps against
hand-computed values, and the pipeline (projections dropped from the export,
students built from chosen teacher layers, several teachers, bad input)."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kdjax import students
from kdjax.errors import KdjaxError
from kdjax.methods.kd import pieces
from kdjax.methods.kd import pipeline as kd
from kdjax.methods.rl_kd import pieces as rl_pieces
from kdjax.models.bert import BertConfig
from kdjax.models.heads import BertClassifier
from kdjax.steps import init_state
from tests.conftest import classifier_batch, export_accuracy
from tests.test_e2e import tiny_config

TEACHER = BertConfig(vocab_size=30522, hidden_size=32, num_layers=3, num_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
NARROW = BertConfig(vocab_size=30522, hidden_size=16, num_layers=2, num_heads=2,
                    intermediate_size=32, max_position_embeddings=64)


def _params(model, seed):
  ids = np.zeros((1, 8), np.int32)
  return jax.device_get(model.init(jax.random.PRNGKey(seed), ids, ids,
                                   np.ones_like(ids))['params'])


def _np_mse(h_s, h_t, mask):
  return (((h_s - h_t) ** 2).mean(-1) * mask).sum(1) / mask.sum(1)


def _np_kl(a_t, a_s, mask):
  if a_t.shape[1] != a_s.shape[1]:
    a_t, a_s = a_t.mean(1, keepdims=True), a_s.mean(1, keepdims=True)
  keys = mask[:, None, None, :] > 0
  with np.errstate(divide='ignore', invalid='ignore'):
    rows = np.where(keys, a_t * (np.log(a_t) - np.log(a_s)), 0.0).sum(-1).mean(1)
  return (rows * mask).sum(1) / mask.sum(1)


def test_layer_targets_pair_embeddings_and_mapped_layers():
  layers = pieces.LayerTargets(students.checked_layer_map((), 2, 3, 'distill.layer_map'), 1.0)
  assert layers.layer_map == (0, 2)  # evenly spaced, ending with the last layer
  assert layers.hidden_pairs == ((0, 0), (1, 1), (2, 3))
  assert layers.attention_pairs == ((0, 0), (1, 2))
  assert layers.on and not pieces.LayerTargets((0, 2)).on
  assert students.checked_layer_map((2, 1), 2, 3, 'k') == (2, 1)
  for bad in ((0,), (0, 3), (-1, 0)):
    with pytest.raises(KdjaxError, match='distill.layer_map'):
      students.checked_layer_map(bad, 2, 3, 'distill.layer_map')


def test_layer_step_loss_is_logits_plus_weighted_hidden_and_attention():
  """One step's metrics against the losses recomputed from the two models'
  states (the step's own dropout stream), the embeddings pair included."""
  teacher, student = BertClassifier(TEACHER, 3), BertClassifier(NARROW, 3)
  t_params = _params(teacher, 0)
  s_params = {**_params(student, 1),
              'projection': jax.device_get(pieces.init_projections(2, 2, 16, 32))}
  layers = pieces.LayerTargets((0, 2), hidden_weight=0.7, attention_weight=0.3)
  step = pieces.distill_step(student, alpha=0.5, temperature=2.0, regression=False,
                             teacher=teacher, layers=layers)
  batch = classifier_batch()
  tx = optax.sgd(0.1)
  rng = jax.random.PRNGKey(3)
  new, metrics = jax.jit(functools.partial(step, tx=tx))(init_state(s_params, tx), t_params,
                                                          batch, rng)

  inputs = (batch['input_ids'], batch['token_type_ids'], batch['attention_mask'])
  t_out = teacher.apply({'params': t_params}, *inputs, output_hidden_states=True,
                        output_attentions=True)
  s_out = student.apply({'params': pieces.classifier_params(s_params)}, *inputs,
                        deterministic=False, rngs={'dropout': jax.random.fold_in(rng, 0)},
                        output_hidden_states=True, output_attentions=True)
  t_out, s_out = jax.tree.map(lambda x: np.asarray(x, np.float64), (t_out, s_out))
  mask = batch['attention_mask'].astype(np.float64)
  proj = {k: np.asarray(v, np.float64) for k, v in s_params['projection'].items()}
  hidden = sum(_np_mse(s_out['hidden_states'][s] @ proj[name], t_out['hidden_states'][t], mask)
               for (s, t), name in zip(((0, 0), (1, 1), (2, 3)),
                                       ('embeddings', 'layer_0', 'layer_1')))
  attention = sum(_np_kl(t_out['attentions'][t], s_out['attentions'][s], mask)
                  for s, t in ((0, 0), (1, 2)))
  z_s, z_t = s_out['logits'], batch['teacher_logits'].astype(np.float64)
  log_p = lambda z: z - z.max(-1, keepdims=True) - np.log(
      np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
  hard = -log_p(z_s)[np.arange(8), batch['labels']]
  soft = -4.0 * (np.exp(log_p(z_t / 2.0)) * log_p(z_s / 2.0)).sum(-1)
  logit = 0.5 * hard + 0.5 * soft
  np.testing.assert_allclose(float(metrics['hidden_loss']), hidden.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(metrics['attention_loss']), attention.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(metrics['logit_loss']), logit.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(metrics['loss']),
                             (logit + 0.7 * hidden + 0.3 * attention).mean(), rtol=1e-4)
  # Every projection and the student's layers learn; the teacher is an
  # argument, not a parameter, and stays as it was.
  for name in pieces.projection_names(2):
    assert float(jnp.abs(new['params']['projection'][name]
                         - s_params['projection'][name]).max()) > 0, name
  assert jax.tree.structure(new['params']) == jax.tree.structure(s_params)


def test_layer_step_compares_states_directly_at_equal_widths():
  teacher = BertClassifier(TEACHER, 2)
  same = BertClassifier(BertConfig(**{**TEACHER.__dict__, 'num_layers': 1}), 2)
  t_params, s_params = _params(teacher, 0), _params(same, 1)
  layers = pieces.LayerTargets((2,), hidden_weight=1.0)
  step = pieces.distill_step(same, alpha=0.5, temperature=2.0, regression=False,
                             teacher=teacher, layers=layers)
  tx = optax.sgd(0.0)
  batch = {**classifier_batch(labels=2), 'teacher_logits': np.zeros((8, 2), np.float32)}
  _, metrics = jax.jit(functools.partial(step, tx=tx))(init_state(s_params, tx), t_params,
                                                        batch, jax.random.PRNGKey(0))
  inputs = (batch['input_ids'], batch['token_type_ids'], batch['attention_mask'])
  t_h = teacher.apply({'params': t_params}, *inputs, output_hidden_states=True)['hidden_states']
  s_h = same.apply({'params': s_params}, *inputs, deterministic=False,
                   rngs={'dropout': jax.random.fold_in(jax.random.PRNGKey(0), 0)},
                   output_hidden_states=True)['hidden_states']
  mask = batch['attention_mask'].astype(np.float64)
  expected = sum(_np_mse(np.asarray(s_h[s], np.float64), np.asarray(t_h[t], np.float64), mask)
                 for s, t in ((0, 0), (1, 3)))
  np.testing.assert_allclose(float(metrics['hidden_loss']), expected.mean(), rtol=1e-4)
  assert 'attention_loss' not in metrics


def test_several_teachers_use_the_rl_kd_fixed_weight_loss():
  model = BertClassifier(NARROW, 3)
  params = _params(model, 0)
  rng = np.random.default_rng(0)
  z = 3 * rng.normal(size=(8, 3))  # a confident teacher and an undecided one
  batch = {**classifier_batch(),
           'teacher_logits': np.stack([z, np.zeros_like(z)], 1).astype(np.float32)}
  tx = optax.sgd(0.1)
  common = dict(alpha=0.3, temperature=2.0, regression=False)

  def run(step, b):
    return jax.jit(functools.partial(step, tx=tx))(init_state(params, tx), b,
                                                   jax.random.PRNGKey(0))
  ours, ours_m = run(pieces.distill_step(model, teacher_weights=(0.25, 0.75), **common), batch)
  theirs, theirs_m = run(rl_pieces.fixed_weight_step(model, teacher_weights=(0.25, 0.75),
                                                     **common), batch)
  assert float(ours_m['loss']) == float(theirs_m['loss'])
  jax.tree.map(np.testing.assert_array_equal, ours['params'], theirs['params'])
  # All the weight on the first teacher is that teacher's plain KD.
  first, first_m = run(pieces.distill_step(model, teacher_weights=(1.0, 0.0), **common), batch)
  single, single_m = run(pieces.distill_step(model, **common),
                         {**batch, 'teacher_logits': batch['teacher_logits'][:, 0]})
  np.testing.assert_allclose(float(first_m['loss']), float(single_m['loss']), rtol=1e-6)
  # The weights matter: the step moves the head towards another target.
  head = lambda p: np.asarray(p['params']['classifier']['dense']['kernel'])
  assert np.abs(head(ours) - head(first)).max() > 1e-5


def test_teacher_weights_are_checked_and_normalised():
  class Section:
    teacher_weights = ()
  assert kd.teacher_weights(Section, 1) is None
  assert kd.teacher_weights(Section, 4) == (0.25,) * 4
  Section.teacher_weights = (3, 1)
  assert kd.teacher_weights(Section, 2) == (0.75, 0.25)
  for bad in ((1.0,), (1.0, -1.0), (0.0, 0.0), (float('nan'), 1.0)):
    Section.teacher_weights = bad
    with pytest.raises(KdjaxError, match='distill.teacher_weights'):
      kd.teacher_weights(Section, 2)


def test_chosen_layers_first_or_evenly_spaced():
  assert students.chosen_layers('first', 3, 6) == (0, 1, 2)
  assert students.chosen_layers('evenly_spaced', 3, 6) == (1, 3, 5)
  with pytest.raises(KdjaxError, match='layer_choice'):
    students.chosen_layers('last', 3, 6)


# ------------------------------------------------------------------ pipeline

def _safetensors_keys(export_dir):
  from safetensors.numpy import load_file
  return load_file(os.path.join(export_dir, 'model.safetensors'))


def test_layer_losses_run_end_to_end_and_the_export_drops_projections(tmp_path,
                                                                      tiny_teacher_dir):
  config = tiny_config(tiny_teacher_dir)
  config.distill.hidden_weight = 1.0
  config.distill.attention_weight = 1.0
  workdir = str(tmp_path / 'run')
  summary = kd.run(config, workdir)
  # 1-layer x 16 student of the 2-layer x 32 teacher: two 16 x 32 projections
  # (embeddings, layer 0), trained but neither counted in nor exported with it.
  assert summary['layer_losses'] == {'hidden_weight': 1.0, 'attention_weight': 1.0,
                                     'layer_map': [1], 'projection_params': 2 * 16 * 32}
  tensors = _safetensors_keys(summary['student']['export_dir'])
  assert not any('projection' in k for k in tensors)
  assert summary['student']['params'] == sum(v.size for v in tensors.values())
  assert export_accuracy(summary['student']['export_dir'], config) == pytest.approx(
      summary['student']['metrics']['accuracy'])
  lines = [json.loads(l) for l in open(os.path.join(workdir, 'metrics.jsonl'))]
  logged = [l for l in lines if l['phase'] == 'student' and 'loss' in l]
  assert logged and all(l['hidden_loss'] > 0 and l['attention_loss'] > 0 for l in logged)
  # The projections are in the student's checkpoints (they resume with it).
  best = os.path.join(workdir, 'checkpoints', 'student')
  assert os.listdir(best)


def test_student_from_the_first_teacher_layers(tmp_path, tiny_teacher_dir):
  """student.init=teacher_layers with layer_choice=first: a 1-layer student
  starts as the teacher's bottom layer (evenly spaced would take its top one)."""
  config = tiny_config(tiny_teacher_dir)
  config.teacher.epochs = 0.0
  config.student.init = 'teacher_layers'
  config.student.layer_choice = 'first'
  config.student.hidden_size, config.student.num_heads = 32, 4
  config.student.intermediate_size = 64
  config.distill.learning_rate = 1e-12  # the student stays where it started
  config.distill.epochs = 0.2
  summary = kd.run(config, str(tmp_path / 'first'))
  student = _safetensors_keys(summary['student']['export_dir'])
  teacher = _safetensors_keys(summary['teacher']['export_dir'])
  name = 'bert.encoder.layer.{}.attention.self.query.weight'
  np.testing.assert_allclose(student[name.format(0)], teacher[name.format(0)], atol=1e-6)
  assert np.abs(student[name.format(0)] - teacher[name.format(1)]).max() > 1e-3


def test_two_teachers_end_to_end(tmp_path, tiny_teacher_dir):
  config = tiny_config(tiny_teacher_dir)
  config.teacher.checkpoint = ''
  config.teacher.checkpoints = (tiny_teacher_dir, tiny_teacher_dir)
  config.distill.teacher_weights = (1.0, 3.0)
  config.distill.hidden_weight = 0.5  # layer targets from the first teacher
  summary = kd.run(config, str(tmp_path / 'two'))
  assert summary['teacher_weights'] == [0.25, 0.75]
  first, second = (_safetensors_keys(summary[r]['export_dir']) for r in ('teacher', 'teacher_1'))
  # The same checkpoint, fine-tuned with seeds teacher.seed and teacher.seed + 100.
  assert np.abs(first['classifier.weight'] - second['classifier.weight']).max() > 1e-2
  assert summary['student']['params'] < summary['teacher_1']['params']


def _other_vocabulary(src, dst):
  import shutil
  shutil.copytree(src, dst)
  path = os.path.join(dst, 'tokenizer.json')
  tok = json.load(open(path, encoding='utf-8'))
  vocab = tok['model']['vocab']
  token = next(t for t, i in vocab.items() if i == 2000)
  vocab['zzqqxx'] = vocab.pop(token)
  json.dump(tok, open(path, 'w', encoding='utf-8'))
  vocab_txt = os.path.join(dst, 'vocab.txt')
  if os.path.exists(vocab_txt):
    lines = open(vocab_txt, encoding='utf-8').read().split('\n')
    lines[2000] = 'zzqqxx'
    open(vocab_txt, 'w', encoding='utf-8').write('\n'.join(lines))
  return dst


@pytest.mark.parametrize('change, message', [
    (lambda c, d, t: c.update({'teacher.checkpoints': (d, d)}), 'both set'),
    (lambda c, d, t: c.update({'teacher.checkpoint': '', 'teacher.checkpoints': (d, d),
                               'distill.teacher_weights': (1.0,)}), 'one weight per teacher'),
    (lambda c, d, t: c.update({'distill.layer_map': (0, 1)}), 'distill.layer_map'),
    (lambda c, d, t: c.update({'distill.hidden_weight': 1.0, 'distill.layer_map': (5,)}),
     'distill.layer_map'),
    (lambda c, d, t: c.update({'teacher.checkpoint': '',
                               'teacher.checkpoints': (d, _other_vocabulary(d, t))}),
     'another vocabulary'),
])
def test_bad_teacher_and_layer_settings_fail_before_any_work(tmp_path, tiny_teacher_dir, change,
                                                             message):
  config = tiny_config(tiny_teacher_dir)
  updates = {}
  change(updates, tiny_teacher_dir, str(tmp_path / 'other'))
  for key, value in updates.items():
    section, name = key.split('.')
    config[section][name] = value
  workdir = tmp_path / 'run'
  with pytest.raises(KdjaxError, match=message):
    kd.run(config, str(workdir))
  assert not (workdir / 'config.json').exists()
