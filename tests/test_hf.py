"""HF import parity on the real all-MiniLM-L6-v2 and the HF export round trip."""
import json
import os

import jax
import numpy as np
import pytest
from transformers import AutoConfig, AutoTokenizer

from kdjax.errors import KdjaxError
from kdjax.models.bert import BertEncoder, init_params
from kdjax.models.heads import BertClassifier
from kdjax.models.hf import export_hf_checkpoint, hf_state_dict, load_hf_checkpoint

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')


def test_import_matches_reference_implementation(minilm_dir):
  """Last hidden state within 1e-4 of PyTorch transformers (tests/golden/PROVENANCE.json)."""
  golden = np.load(os.path.join(GOLDEN, 'minilm_last_hidden.npz'))
  ckpt = load_hf_checkpoint(minilm_dir)
  assert (ckpt.config.num_layers, ckpt.config.hidden_size) == (6, 384)
  assert ckpt.head_params is None
  out = BertEncoder(ckpt.config).apply(
      {'params': ckpt.encoder_params}, golden['input_ids'], golden['token_type_ids'],
      golden['attention_mask'])
  diff = np.abs(np.asarray(out['last_hidden_state']) - golden['last_hidden_state']).max()
  assert diff < 1e-4, diff
  assert np.abs(np.asarray(out['pooled']) - golden['pooler_output']).max() < 1e-4
  # The golden inputs were made by the same tokenizer kdjax uses.
  tok = AutoTokenizer.from_pretrained(minilm_dir)
  enc = tok('The quick brown fox jumps over the lazy dog.', padding='max_length',
            max_length=golden['input_ids'].shape[1])
  np.testing.assert_array_equal(enc['input_ids'], golden['input_ids'][0])


def test_encoder_returns_all_hidden_states_and_attentions(tiny_teacher_dir):
  ckpt = load_hf_checkpoint(tiny_teacher_dir)
  ids = np.ones((2, 8), np.int32)
  out = BertEncoder(ckpt.config).apply({'params': ckpt.encoder_params}, ids, 0 * ids, ids,
                                       output_hidden_states=True, output_attentions=True)
  assert len(out['hidden_states']) == ckpt.config.num_layers + 1
  assert out['attentions'][0].shape == (2, ckpt.config.num_heads, 8, 8)
  np.testing.assert_allclose(out['attentions'][1].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(out['hidden_states'][-1], out['last_hidden_state'])


def _classifier(tiny_teacher_dir, num_labels):
  ckpt = load_hf_checkpoint(tiny_teacher_dir)
  model = BertClassifier(ckpt.config, num_labels)
  params = jax.device_get(init_params(model, jax.random.PRNGKey(1)))
  params['bert'] = ckpt.encoder_params
  return ckpt, model, params


@pytest.mark.parametrize('labels', [('neg', 'pos', 'neutral'), None])
def test_export_round_trip(tmp_path, tiny_teacher_dir, minilm_dir, labels):
  num = 1 if labels is None else len(labels)
  ckpt, model, params = _classifier(tiny_teacher_dir, num)
  out_dir = export_hf_checkpoint(str(tmp_path / 'export'), ckpt.config, params['bert'],
                                 params['classifier'], labels, minilm_dir)
  # transformers reads the config and tokenizer as a HF user would.
  hf_config = AutoConfig.from_pretrained(out_dir)
  assert hf_config.architectures == ['BertForSequenceClassification']
  assert hf_config.num_labels == num
  assert hf_config.problem_type == ('regression' if labels is None
                                    else 'single_label_classification')
  if labels:
    assert [hf_config.id2label[i] for i in range(num)] == list(labels)
  with open(os.path.join(out_dir, 'vocab.txt')) as f, \
      open(os.path.join(minilm_dir, 'vocab.txt')) as g:
    assert f.read() == g.read()
  tok = AutoTokenizer.from_pretrained(out_dir)
  assert tok('hello world')['input_ids'] == AutoTokenizer.from_pretrained(minilm_dir)(
      'hello world')['input_ids']
  # Weights round-trip exactly, so logits agree far below 1e-4.
  back = load_hf_checkpoint(out_dir)
  assert back.label_names == (labels if labels else ('score',))
  ids = np.asarray(tok(['a short test sentence', 'another one'], padding='max_length',
                       max_length=12, return_tensors='np')['input_ids'], np.int32)
  args = (ids, np.zeros_like(ids), (ids > 0).astype(np.int32))
  before = model.apply({'params': params}, *args)['logits']
  after = model.apply({'params': {'bert': back.encoder_params,
                                  'classifier': back.head_params}}, *args)['logits']
  np.testing.assert_allclose(after, before, atol=1e-6)


def test_export_uses_the_names_transformers_expects(tiny_teacher_dir):
  """Same tensor names as torch BertForSequenceClassification.state_dict() (golden list)."""
  with open(os.path.join(GOLDEN, 'bert_seqcls_keys.json')) as f:
    expected = json.load(f)['keys']
  ckpt, _, params = _classifier(tiny_teacher_dir, 3)
  assert ckpt.config.num_layers == 2  # the golden list was made for 2 layers
  assert sorted(hf_state_dict(ckpt.config, params['bert'], params['classifier'])) == expected


def test_missing_and_corrupt_checkpoints(tmp_path, tiny_teacher_dir):
  with pytest.raises(KdjaxError, match='does not exist'):
    load_hf_checkpoint(str(tmp_path / 'nope'))
  broken = tmp_path / 'broken'
  broken.mkdir()
  (broken / 'config.json').write_text(open(os.path.join(tiny_teacher_dir, 'config.json')).read())
  with pytest.raises(KdjaxError, match='model.safetensors is missing'):
    load_hf_checkpoint(str(broken))
  (broken / 'model.safetensors').write_bytes(b'\x00garbage' * 10)
  with pytest.raises(KdjaxError, match='cannot read weights'):
    load_hf_checkpoint(str(broken))
  (broken / 'config.json').write_text('{not json')
  with pytest.raises(KdjaxError, match='not valid JSON'):
    load_hf_checkpoint(str(broken))


def test_weights_that_do_not_match_the_config(tmp_path, tiny_teacher_dir):
  bad = tmp_path / 'bad'
  bad.mkdir()
  config = json.load(open(os.path.join(tiny_teacher_dir, 'config.json')))
  (bad / 'model.safetensors').write_bytes(
      open(os.path.join(tiny_teacher_dir, 'model.safetensors'), 'rb').read())
  (bad / 'config.json').write_text(json.dumps({**config, 'num_hidden_layers': 3}))
  with pytest.raises(KdjaxError, match='no tensor'):
    load_hf_checkpoint(str(bad))
  (bad / 'config.json').write_text(json.dumps({**config, 'vocab_size': 100}))
  with pytest.raises(KdjaxError, match='do not match'):
    load_hf_checkpoint(str(bad))


def test_float16_export_halves_the_weights(tmp_path, tiny_teacher_dir, minilm_dir):
  from safetensors.numpy import load_file
  ckpt = load_hf_checkpoint(tiny_teacher_dir)
  out = {}
  for dtype in ('float32', 'float16'):
    path = export_hf_checkpoint(str(tmp_path / dtype), ckpt.config, ckpt.encoder_params, None,
                                None, minilm_dir, dtype=dtype)
    out[dtype] = load_file(os.path.join(path, 'model.safetensors'))
  assert all(v.dtype == np.float16 for v in out['float16'].values())
  for name, full in out['float32'].items():
    np.testing.assert_allclose(out['float16'][name].astype(np.float32), full, rtol=1e-3,
                               atol=1e-4)
  # A half-precision export loads back (as float32 params) with the same values.
  back = load_hf_checkpoint(str(tmp_path / 'float16'))
  leaf = back.encoder_params['layer_0']['output']['kernel']
  np.testing.assert_allclose(leaf, ckpt.encoder_params['layer_0']['output']['kernel'],
                             rtol=1e-3, atol=1e-4)
  with pytest.raises(KdjaxError, match='dtype'):
    export_hf_checkpoint(str(tmp_path / 'bad'), ckpt.config, ckpt.encoder_params, None, None,
                         minilm_dir, dtype='int8')
