"""Property-based bad-input suite: data files, tokenization, config values and
checkpoint import. Each generated case either yields exactly what was written
or ends in a KdjaxError (one `kdjax: error:` line at the CLI); any other
exception, or a silently different result, fails. The number of generated
cases is printed at the end of the pytest run."""
import collections
import csv
import io
import json
import math
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from kdjax import config_check
from kdjax.data import sources
from kdjax.data.tasks import GLUE_TASKS, Examples, TaskSpec
from kdjax.data.tokenize import encode
from kdjax.errors import KdjaxError
from kdjax.teachers import open_teacher
from tests.conftest import REPO, load_config
from tests.test_cli import assert_one_line_error, run_cli

CASES = collections.Counter()  # generated cases per test, reported by conftest

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow])

# Text that survives a TSV line as one field ('\t', line breaks and NUL are the
# malformations, drawn separately); no BOM, which utf-8-sig strips at the start.
field_text = st.text(st.characters(blacklist_categories=('Cs',),
                                   blacklist_characters='\t\n\r\x00\ufeff'), max_size=20)


def outcome(read, path):
  """('ok', result) or ('error', message); anything else propagates and fails."""
  try:
    result = read(path)
  except KdjaxError as e:
    assert '\n' not in str(e), str(e)
    event('refused')
    return 'error', str(e)
  event('accepted')
  return 'ok', result


# ------------------------------------------------------------------ GLUE TSV

GLUE_HEADERS = {'sst2': ['sentence', 'label'], 'stsb': ['sentence1', 'sentence2', 'score'],
                'cola': []}
# At most one malformation per file, so about half the files are well-formed.
GLUE_FAULTS = [None] * 5 + ['label', 'ragged', 'header', 'utf8', 'nul', 'empty', 'no_rows']


@st.composite
def glue_file(draw):
  """(task, file bytes, expected (texts_a, texts_b, labels), or None for a bad file)."""
  task = draw(st.sampled_from(sorted(GLUE_HEADERS)))
  spec = GLUE_TASKS[task]
  fault = draw(st.sampled_from(GLUE_FAULTS))
  good_label = (st.sampled_from(spec.label_names) if spec.label_names else
                st.floats(0, 5).map(repr))
  bad_label = st.sampled_from(['2', '-1', '', 'x', 'nan', 'inf', '5.5', '-0.1', ' 1'])
  n = 0 if fault == 'no_rows' else draw(st.integers(1, 5))
  victim = draw(st.integers(0, max(n - 1, 0)))
  rows, expected = [], ([], [], [])
  for r in range(n):
    texts = [draw(field_text) for _ in spec.text_columns]
    label = draw(bad_label if fault == 'label' and r == victim else good_label)
    row = ['src', label, '', *texts] if task == 'cola' else [*texts, label]  # CoLA: no header
    if fault == 'ragged' and r == victim:
      row = row[:-1]
    rows.append(row)
    expected[0].append(texts[0])
    expected[1].append(texts[1] if len(texts) > 1 else None)
    expected[2].append(label)
  header = GLUE_HEADERS[task]
  if fault == 'header' and header:
    header = [h.upper() for h in header]
  data = '\n'.join('\t'.join(r) for r in ([header] if header else []) + rows).encode('utf-8')
  data = {'utf8': data + b'\xff\xfe\x80', 'nul': data + b'\x00', 'empty': b''}.get(fault, data)
  if fault == 'label' and _label_ok(spec, expected[2][victim]):
    fault = None  # e.g. '2' is a fine STS-B score
  if fault == 'header' and not header:
    fault = None
  return task, data, None if fault else expected


def _label_ok(spec: TaskSpec, label: str) -> bool:
  if spec.label_names:
    return label in spec.label_names
  try:
    return 0 <= float(label) <= 5
  except ValueError:
    return False


@settings(max_examples=300, **SETTINGS)
@given(case=glue_file())
def test_glue_tsv_is_read_exactly_or_refused(tmp_path, case):
  CASES['GLUE TSV files'] += 1
  task, data, expected = case
  path = tmp_path / f'{task}.tsv'
  path.write_bytes(data)
  kind, result = outcome(lambda p: sources.read_glue_tsv(str(p), task, GLUE_TASKS[task]), path)
  if expected is None:
    assert kind == 'error', f'accepted a bad file: {data[:200]!r}'
    return
  assert kind == 'ok', result
  texts_a, texts_b, labels = expected
  assert result.texts_a == texts_a
  assert result.texts_b == (None if texts_b[0] is None else texts_b)
  spec = GLUE_TASKS[task]
  want = ([spec.label_names.index(l) for l in labels] if spec.label_names else
          np.float32([float(l) for l in labels]))
  np.testing.assert_array_equal(result.labels, want)


# ------------------------------------------------------------- user files

USER_SPEC = TaskSpec('file', ('text',), ('neg', 'pos'), ('accuracy',))
CSV_FAULTS = [None] * 5 + ['columns', 'duplicate', 'ragged', 'label', 'utf8', 'nul', 'no_rows']
JSON_FAULTS = [None] * 5 + ['columns', 'label', 'null', 'not_object', 'utf8', 'nul',
                            'truncated', 'no_rows']
cell_text = st.text(st.characters(blacklist_categories=('Cs',),
                                  blacklist_characters='\x00\ufeff'), max_size=12)


@st.composite
def user_file(draw):
  """(extension, file bytes, expected (texts, labels), or None for a bad file)."""
  ext = draw(st.sampled_from(['.csv', '.tsv', '.jsonl', '.json']))
  fault = draw(st.sampled_from(CSV_FAULTS if ext in ('.csv', '.tsv') else JSON_FAULTS))
  columns = draw(st.permutations(['text', 'label', 'other']))
  if fault == 'columns':
    missing = draw(st.sampled_from(['text', 'label']))
    columns = [c for c in columns if c != missing]
  if fault == 'duplicate':
    columns = columns + [draw(st.sampled_from(columns))]
  n = 0 if fault == 'no_rows' else draw(st.integers(1, 4))
  victim = draw(st.integers(0, max(n - 1, 0)))
  records = []
  for r in range(n):
    record = {c: draw(cell_text) for c in columns}
    if 'label' in record:
      record['label'] = draw(st.sampled_from(['neg', 'pos']))
    if r == victim and fault == 'label':
      record['label'] = draw(st.sampled_from(['', 'Neg', 'neutral', '0']))
    if r == victim and fault == 'null':
      record[draw(st.sampled_from(['text', 'label']))] = draw(st.sampled_from([None, [1], {}]))
    records.append(record)
  if ext in ('.csv', '.tsv'):
    rows = [[str(rec.get(c, '')) for c in columns] for rec in records]
    if fault == 'ragged':
      rows[victim] = rows[victim] + ['extra'] if draw(st.booleans()) else rows[victim][:-1]
    out = io.StringIO()
    csv.writer(out, delimiter='\t' if ext == '.tsv' else ',').writerows([columns, *rows])
    data = out.getvalue().encode('utf-8')
  else:
    if fault == 'not_object':
      records[victim] = draw(st.sampled_from([5, 'text', [1, 2]]))
    text = ('\n'.join(json.dumps(r) for r in records) if ext == '.jsonl' else
            json.dumps(records))
    data = text.encode('utf-8')
    if fault == 'truncated':
      data = data[:-1] if ext == '.json' else data + b'\n{"text": '
  if fault in ('utf8', 'nul'):  # a stray byte, as in a binary or mis-encoded file
    at = draw(st.integers(0, len(data)))
    data = data[:at] + (b'\xc3\x28' if fault == 'utf8' else b'\x00') + data[at:]
  expected = None if fault else (
      [str(r['text']) for r in records], [USER_SPEC.label_names.index(r['label']) for r in records])
  return ext, data, expected


@settings(max_examples=300, **SETTINGS)
@given(case=user_file())
def test_user_files_are_read_exactly_or_refused(tmp_path, case):
  CASES['user data files'] += 1
  ext, data, expected = case
  path = tmp_path / f'data{ext}'
  path.write_bytes(data)
  kind, result = outcome(lambda p: sources.read_user_file(str(p), USER_SPEC, 'label'), path)
  if expected is None:
    assert kind == 'error', f'accepted a bad file: {data[:300]!r}'
    return
  assert kind == 'ok', result
  assert result.texts_a == expected[0]
  np.testing.assert_array_equal(result.labels, expected[1])


# ------------------------------------------------------------- tokenization

@pytest.fixture(scope='module')
def tokenizer(minilm_dir):
  from kdjax.data.tokenize import load_tokenizer
  return load_tokenizer(minilm_dir)


any_text = st.text(st.characters(blacklist_categories=('Cs',)), max_size=300)


@settings(max_examples=100, **SETTINGS)
@given(texts=st.lists(any_text, min_size=1, max_size=4), pair=st.booleans(),
       max_length=st.integers(4, 40))
def test_any_text_tokenizes_to_static_in_range_shapes(tokenizer, texts, pair, max_length):
  CASES['tokenization'] += 1
  examples = Examples(texts, texts[::-1] if pair else None, np.zeros(len(texts), np.int32))
  enc = encode(tokenizer, examples, max_length)
  for key in ('input_ids', 'token_type_ids', 'attention_mask'):
    assert enc[key].shape == (len(texts), max_length) and enc[key].dtype == np.int32
  ids, mask = enc['input_ids'], enc['attention_mask']
  assert ((0 <= ids) & (ids < len(tokenizer))).all()
  assert (ids[:, 0] == tokenizer.cls_token_id).all() and (mask[:, 0] == 1).all()
  assert (np.diff(mask, axis=1) <= 0).all()  # real tokens first, then padding
  assert ((ids == tokenizer.pad_token_id) == (mask == 0)).all()
  lengths = mask.sum(1)
  assert (ids[np.arange(len(texts)), lengths - 1] == tokenizer.sep_token_id).all()
  if not pair:
    assert (enc['token_type_ids'] == 0).all()


# ------------------------------------------------------------- config values

def shipped_configs():
  from kdjax.defaults import get_config
  configs = {'defaults': get_config().to_dict()}
  for name in sorted(os.listdir(os.path.join(REPO, 'configs'))):
    if name.endswith('.py'):
      configs[name[:-3]] = load_config(name[:-3]).to_dict()
  return configs


def numeric_keys(section, prefix=''):
  for key, value in section.items():
    if isinstance(value, dict):
      yield from numeric_keys(value, f'{prefix}{key}.')
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield prefix + key


def with_value(config, dotted, value):
  config = json.loads(json.dumps(config))
  *parents, leaf = dotted.split('.')
  section = config
  for p in parents:
    section = section[p]
  section[leaf] = value
  return config


CONFIGS = shipped_configs()
NUMERIC = sorted({(name, key) for name, c in CONFIGS.items() for key in numeric_keys(c)})


# What each numeric key may hold, from what it means; independent of
# config_check.RULES, so a wrong rule there fails these tests.
KINDS = {
    # (accepts, boundary values it must accept, boundary values it must refuse)
    'size': (lambda v: v >= 1, [1, 2, 10**6], [0, -1, -10**6]),
    'count': (lambda v: v >= 0, [0, 1, 10**6], [-1, -10**6]),
    'positive': (lambda v: v > 0, [1e-12, 1.0, 1e6], [0.0, -1e-12, -1.0]),
    'non_negative': (lambda v: v >= 0, [0.0, 1e-12, 1e6], [-1e-12, -1.0]),
    'fraction': (lambda v: 0 <= v < 1, [0.0, 0.5, 0.999999], [1.0, 1.5, -1e-9, -0.5]),
    'weight': (lambda v: 0 <= v <= 1, [0.0, 0.5, 1.0], [1.000001, 2.0, -1e-9]),
}
KIND_OF = {
    # Widths, depths, batches, lengths, intervals and counts of things that must
    # exist: at least one.
    **dict.fromkeys(['num_layers', 'hidden_size', 'num_heads', 'intermediate_size',
                     'batch_size', 'eval_batch_size', 'heldout_batch_size', 'max_length',
                     'max_positions', 'eval_every', 'checkpoint_every', 'log_every',
                     'keep_checkpoints', 'speed_repeats', 'vocab_size', 'max_predictions',
                     'steps'], 'size'),
    # Limits where 0 means "all", seeds (numpy refuses negative ones), optional
    # step counts and a teacher index.
    **dict.fromkeys(['max_train_examples', 'max_eval_examples', 'max_corpus_texts', 'seed',
                     'split_seed', 'pretrain_seed', 'pretrain_steps', 'single_teacher',
                     'augment_copies'],
                    'count'),
    # An optimiser step and a softmax divisor.
    **dict.fromkeys(['learning_rate', 'temperature'], 'positive'),
    # 0 epochs = use the teacher as is; a zero decay or loss weight switches it off.
    **dict.fromkeys(['epochs', 'weight_decay', 'hidden_weight', 'attention_weight'],
                    'non_negative'),
    # Shares of something that must keep a remainder (training rows, steps
    # after warm-up), and a moving-average decay (1 would never move).
    **dict.fromkeys(['warmup_fraction', 'dev_fraction', 'test_fraction', 'heldout_fraction',
                     'baseline_decay', 'ramp_fraction', 'dev_only_train_fraction'],
                    'fraction'),
    # Mixing weights and probabilities: both ends allowed.
    **dict.fromkeys(['alpha', 'p_student', 'mask_prob', 'augment_mask_prob',
                     'augment_replace_prob', 'augment_repair_prob'], 'weight'),
}


def test_every_numeric_key_of_every_config_has_a_rule():
  for name, config in CONFIGS.items():
    config_check.check(config)  # the shipped values pass
  leaves = {key.split('.')[-1] for _, key in NUMERIC}
  unruled = sorted(leaves - set(config_check.RULES))
  assert not unruled, f'config keys without a range rule: {unruled}'
  unclassified = sorted(leaves - set(KIND_OF))
  assert not unclassified, f'config keys missing from KIND_OF here: {unclassified}'


def section_of(config, dotted):
  for part in dotted.split('.')[:-1]:
    config = config[part]
  return config


def expect_check(base, key, value):
  """Checks `value` at `key` of the config dict `base` against KIND_OF's oracle;
  returns whether the oracle accepts it."""
  leaf = key.split('.')[-1]
  if isinstance(section_of(base, key)[leaf], int) and math.isfinite(value):
    value = int(value)  # an int field holds ints (ml_collections refuses floats)
  config = with_value(base, key, value)
  section = section_of(config, key)
  valid = math.isfinite(value) and KINDS[KIND_OF[leaf]][0](value)
  if valid and leaf in ('hidden_size', 'num_heads') and 'num_heads' in section:
    valid = section['hidden_size'] % section['num_heads'] == 0
  if valid:
    config_check.check(config)
  else:
    with pytest.raises(KdjaxError, match=leaf):
      config_check.check(config)
  return valid


@pytest.mark.parametrize('target', NUMERIC, ids='.'.join)
def test_config_values_at_the_edges_of_their_range(target):
  """Each key's kind's boundary values are accepted or refused as they must
  be; non-finite numbers are refused."""
  name, key = target
  leaf = key.split('.')[-1]
  base = CONFIGS[name]
  if leaf == 'hidden_size':  # one head: every width divides
    base = with_value(base, key.rsplit('.', 1)[0] + '.num_heads', 1)
  if leaf == 'num_heads':  # a width every head count below divides
    base = with_value(base, key.rsplit('.', 1)[0] + '.hidden_size', 10**6)
  _, accepted, refused = KINDS[KIND_OF[leaf]]
  for value in accepted:
    assert expect_check(base, key, value), (key, value)
  for value in refused + [math.nan, math.inf, -math.inf]:
    assert not expect_check(base, key, value), (key, value)


@settings(max_examples=300, **SETTINGS)
@given(target=st.sampled_from(NUMERIC),
       value=st.one_of(st.integers(-10**6, 10**6),
                       st.floats(allow_nan=True, allow_infinity=True)))
def test_config_values_outside_their_range_are_refused(target, value):
  CASES['config values'] += 1
  name, key = target
  expect_check(CONFIGS[name], key, value)


@settings(max_examples=12, **SETTINGS)
@given(target=st.sampled_from(sorted(k for n, k in NUMERIC if n == 'defaults')),
       value=st.sampled_from(['-1', 'nan', '-inf', '1e999', 'abc', '', '[1]']))
def test_bad_overrides_end_in_one_error_line(tmp_path, target, value):
  """Through the real CLI: values invalid for any numeric key stop the run
  before it writes anything."""
  CASES['CLI overrides'] += 1
  workdir = tmp_path / f'run-{CASES["CLI overrides"]}'
  proc = run_cli(f'--config.{target}={value}', '--workdir', str(workdir))
  assert_one_line_error(proc)
  assert not workdir.exists()


# ------------------------------------------------------------- checkpoints

CONFIG_FIELDS = ['vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
                 'intermediate_size', 'max_position_embeddings', 'type_vocab_size',
                 'hidden_dropout_prob', 'layer_norm_eps', 'model_type']


@st.composite
def damage(draw):
  kind = draw(st.sampled_from(['drop_tensor', 'reshape_tensor', 'nan_tensor', 'config',
                               'drop_config_field', 'grow_vocab', 'truncate_weights',
                               'extra_layer', 'bad_json']))
  return kind, draw(st.integers(0, 10**6)), draw(st.sampled_from(
      [0, -1, 'x', None, 1.5, True, 10**9, [], 48]))


@settings(max_examples=60, **SETTINGS)
@given(case=damage())
def test_damaged_checkpoints_are_refused(tmp_path, tiny_teacher_dir, case):
  CASES['checkpoint import'] += 1
  kind, pick, value = case
  ckpt = tmp_path / 'ckpt'
  shutil.rmtree(ckpt, ignore_errors=True)
  shutil.copytree(tiny_teacher_dir, ckpt)
  weights, config_path = ckpt / 'model.safetensors', ckpt / 'config.json'
  tensors = load_file(str(weights))
  names = sorted(tensors)
  name = names[pick % len(names)]
  hf = json.loads(config_path.read_text())
  if kind == 'drop_tensor':
    if name.startswith(('pooler.', 'bert.pooler.')) or 'position_ids' in name:
      return  # a missing pooler is re-initialised by design; position_ids are unused
    del tensors[name]
  elif kind == 'reshape_tensor':
    tensors[name] = np.concatenate([tensors[name], tensors[name][:1]])
  elif kind == 'nan_tensor':
    tensors[name] = tensors[name].copy()
    tensors[name].reshape(-1)[pick % tensors[name].size] = np.nan
  elif kind == 'config':
    field = CONFIG_FIELDS[pick % len(CONFIG_FIELDS)]
    if field in ('hidden_dropout_prob', 'layer_norm_eps') and value in (0, 48):
      value = -1  # 0 is a valid dropout rate: take one that is not
    hf[field] = value
  elif kind == 'drop_config_field':
    del hf[CONFIG_FIELDS[pick % 6]]
  elif kind == 'grow_vocab':
    with open(ckpt / 'vocab.txt', 'a', encoding='utf-8') as f:
      f.writelines(f'[extra{i}]\n' for i in range(pick % 50 + 1))
    for extra in ('tokenizer.json',):
      if (ckpt / extra).exists():
        os.remove(ckpt / extra)
  elif kind == 'truncate_weights':
    data = weights.read_bytes()
    weights.write_bytes(data[:pick % len(data)])
  elif kind == 'extra_layer':
    hf['num_hidden_layers'] -= 1
  elif kind == 'bad_json':
    config_path.write_text(config_path.read_text()[:pick % 40])
  if kind not in ('truncate_weights', 'bad_json'):
    save_file(tensors, str(weights), metadata={'format': 'pt'})
    config_path.write_text(json.dumps(hf))
  with pytest.raises(KdjaxError) as error:
    open_teacher(str(ckpt), max_length=32, seed=0)
  assert '\n' not in str(error.value)


def test_the_undamaged_copy_loads(tmp_path, tiny_teacher_dir):
  """The control for the test above: only the damage makes the import fail."""
  shutil.copytree(tiny_teacher_dir, tmp_path / 'ckpt')
  _, ckpt, tokenizer = open_teacher(str(tmp_path / 'ckpt'), max_length=32, seed=0)
  assert ckpt.config.hidden_size == 32 and len(tokenizer) == ckpt.config.vocab_size
