"""Data sources, split determinism, batching, tokenization, and bad input."""
import json

import numpy as np
import pytest

from kdjax.data import sources
from kdjax.data.batching import TrainBatches, eval_batches
from kdjax.data.tasks import GLUE_TASKS, TaskSpec, get_task
from kdjax.data.tokenize import encode, load_tokenizer
from kdjax.defaults import get_config
from kdjax.errors import KdjaxError


def test_bbc_split_is_deterministic_stratified_and_deduplicated():
  a = sources.load_bbc(sources.bbc_root(), seed=0, dev_fraction=0.1, test_fraction=0.1)
  b = sources.load_bbc(sources.bbc_root(), seed=0, dev_fraction=0.1, test_fraction=0.1)
  c = sources.load_bbc(sources.bbc_root(), seed=1, dev_fraction=0.1, test_fraction=0.1)
  for split in ('train', 'dev', 'test'):
    assert a[split].texts_a == b[split].texts_a
    np.testing.assert_array_equal(a[split].labels, b[split].labels)
  assert a['test'].texts_a != c['test'].texts_a
  texts = [t for s in a.values() for t in s.texts_a]
  assert len(texts) == len(set(texts)) == 2225 - 98  # the corpus's exact duplicates dropped
  assert not set(a['train'].texts_a) & set(a['test'].texts_a)
  total = sum(len(s) for s in a.values())
  for label in range(5):  # every class is split ~80/10/10
    share = np.mean(a['test'].labels == label)
    overall = sum(np.sum(s.labels == label) for s in a.values()) / total
    assert abs(share - overall) < 0.01


def test_glue_local_files(glue_dir):
  expected_train = {'cola': 8551, 'sst2': 67349, 'mrpc': 3668, 'stsb': 5749, 'rte': 2490,
                    'wnli': 635}
  for task, n in expected_train.items():
    splits = sources.load_glue_dir(task, glue_dir)
    assert len(splits['train']) == n, task
    assert (splits['train'].texts_b is not None) == GLUE_TASKS[task].is_pair
  stsb = sources.load_glue_dir('stsb', glue_dir)['dev']
  assert stsb.labels.dtype == np.float32 and 0 <= stsb.labels.min() and stsb.labels.max() <= 5
  rte = sources.load_glue_dir('rte', glue_dir)['dev']
  assert set(np.unique(rte.labels)) == {0, 1}


def test_dev_only_glue_task_is_split_when_the_config_asks(glue_dir):
  """QNLI has only its dev file here: a config with data.dev_only_train_fraction
  trains on that share of it (stratified, seeded) and evaluates on the rest;
  without the key it is refused as before."""
  import ml_collections
  data = _data_config(source='glue_dir', task='qnli', glue_dir=glue_dir)
  with pytest.raises(KdjaxError, match='missing'):
    sources.load_task(data)
  with_key = ml_collections.ConfigDict(data.to_dict())
  with_key.dev_only_train_fraction = 0.5
  _, splits = sources.load_task(with_key)
  dev = sources.load_glue_dir('qnli', glue_dir, require_train=False)['dev']
  assert set(splits) == {'train', 'dev'}
  assert abs(len(splits['train']) - len(dev) / 2) <= 2
  assert len(splits['train']) + len(splits['dev']) == len(dev)
  pairs = lambda ex: sorted(zip(ex.texts_a, ex.texts_b))
  assert sorted(pairs(splits['train']) + pairs(splits['dev'])) == pairs(dev)  # a partition
  assert abs(splits['train'].labels.mean() - splits['dev'].labels.mean()) < 0.01  # stratified
  again = sources.load_task(with_key)[1]
  assert again['dev'].texts_a == splits['dev'].texts_a


def _data_config(**overrides):
  data = get_config().data
  for k, v in overrides.items():
    data[k] = v
  return data


def test_user_csv_tsv_json(tmp_path):
  rows = [('good movie', 'pos'), ('bad plot', 'neg'), ('great', 'pos'), ('awful', 'neg')] * 5
  (tmp_path / 'd.csv').write_text('review,sentiment\n' + ''.join(f'{t},{l}\n' for t, l in rows))
  (tmp_path / 'd.tsv').write_text('review\tsentiment\n' + ''.join(f'{t}\t{l}\n' for t, l in rows))
  (tmp_path / 'd.json').write_text(json.dumps([{'review': t, 'sentiment': l} for t, l in rows]))
  for name in ('d.csv', 'd.tsv', 'd.json'):
    spec, splits = sources.load_task(_data_config(
        source='file', train_file=str(tmp_path / name), text_columns=('review',),
        label_column='sentiment', dev_fraction=0.2, test_fraction=0.2))
    assert spec.label_names == ('neg', 'pos')
    assert sum(len(s) for s in splits.values()) == 20
    assert set(splits) == {'train', 'dev', 'test'}


@pytest.mark.parametrize('content,message', [
    ('review,sentiment\n', 'no examples'),
    ('text,sentiment\nhello,pos\nbye,neg\n', "no column 'review'"),
    ('review,sentiment\nhello,pos\nbye,neg,extra\n', 'different number of fields'),
])
def test_user_file_errors(tmp_path, content, message):
  path = tmp_path / 'bad.csv'
  path.write_text(content)
  with pytest.raises(KdjaxError, match=message):
    sources.load_task(_data_config(source='file', train_file=str(path),
                                   text_columns=('review',), label_column='sentiment'))


def test_label_outside_task_range(tmp_path):
  train, dev = tmp_path / 'train.csv', tmp_path / 'dev.csv'
  train.write_text('text,label\na,pos\nb,neg\nc,pos\nd,neg\n')
  dev.write_text('text,label\na,pos\nb,maybe\n')
  with pytest.raises(KdjaxError, match="label 'maybe', outside the task labels"):
    sources.load_task(_data_config(source='file', train_file=str(train), dev_file=str(dev)))


def test_invalid_utf8_and_missing_files(tmp_path, glue_dir):
  bad = tmp_path / 'bad.tsv'
  bad.write_bytes(b'text\tlabel\n\xff\xfe bad bytes\tpos\n')
  with pytest.raises(KdjaxError, match='not valid UTF-8'):
    sources.load_task(_data_config(source='file', train_file=str(bad)))
  with pytest.raises(KdjaxError, match='missing'):
    sources.load_task(_data_config(source='file', train_file=str(tmp_path / 'none.csv')))
  with pytest.raises(KdjaxError, match='missing'):
    sources.load_glue_dir('rte', str(tmp_path))
  with pytest.raises(KdjaxError, match='unknown task'):
    get_task('imdb')


def test_malformed_glue_tsv(tmp_path, glue_dir):
  folder = tmp_path / 'RTE'
  folder.mkdir()
  (folder / 'train.tsv').write_text('index\tsentence1\tsentence2\tlabel\n0\ta\tb\n')
  with pytest.raises(KdjaxError, match=r'train.tsv:2 has 3 fields'):
    sources.load_glue_dir('rte', str(tmp_path))
  (folder / 'train.tsv').write_text('index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n')
  with pytest.raises(KdjaxError, match='outside the task labels'):
    sources.load_glue_dir('rte', str(tmp_path))


def test_tokenization_static_shapes_and_pairs(minilm_dir):
  tok = load_tokenizer(minilm_dir)
  spec = TaskSpec('t', ('a', 'b'), ('0', '1'), ('accuracy',))
  from kdjax.data.tasks import Examples
  ex = Examples(['a first sentence ' * 40, 'short'], ['second', 'also short'],
                np.array([0, 1], np.int32))
  enc = encode(tok, ex, 32)
  assert all(v.shape == (2, 32) and v.dtype == np.int32 for v in enc.values())
  assert enc['token_type_ids'][1].max() == 1 and enc['attention_mask'][1].sum() < 32
  assert enc['input_ids'][0, 0] == tok.cls_token_id
  assert spec.is_pair


def test_train_batches_are_a_pure_function_of_step_and_sharded():
  arrays = {'x': np.arange(100)}
  whole = TrainBatches(arrays, 8, seed=3)
  assert whole.steps_per_epoch == 12
  np.testing.assert_array_equal(whole.batch_at(17)['x'], TrainBatches(arrays, 8, seed=3).batch_at(17)['x'])
  epoch = np.concatenate([whole.batch_at(s)['x'] for s in range(12)])
  assert len(set(epoch)) == 96  # no repeats within an epoch
  assert not np.array_equal(whole.batch_at(0)['x'], whole.batch_at(12)['x'])  # reshuffled
  parts = [TrainBatches(arrays, 8, seed=3, process_index=p, process_count=2).batch_at(5)['x']
           for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(parts), whole.batch_at(5)['x'])


def test_eval_batches_pad_with_zero_weight():
  batches = list(eval_batches({'x': np.arange(10)}, 4))
  assert [b['x'].shape for _, b in batches] == [(4,)] * 3
  np.testing.assert_array_equal(batches[-1][1]['weights'], [1, 1, 0, 0])
  np.testing.assert_array_equal(batches[-1][0], [8, 9, -1, -1])
  assert sum(b['weights'].sum() for _, b in batches) == 10


REVIEWS = [('a good film that I liked a lot', 'pos'), ('a bad film that I hated a lot', 'neg'),
           ('great', 'pos'), ('awful', 'neg')] * 5


def test_file_without_header_read_with_header_no_and_auto(tmp_path):
  path = tmp_path / 'no_header.tsv'
  path.write_text(''.join(f'{t}\t{l}\n' for t, l in REVIEWS))
  for header in ('no', 'auto'):
    spec, splits = sources.load_task(_data_config(
        source='file', train_file=str(path), header=header, text_columns=('0',),
        label_column='1'))
    assert spec.label_names == ('neg', 'pos')
    assert sorted(t for s in splits.values() for t in s.texts_a) == sorted(t for t, _ in REVIEWS)
  # With a header, the same column numbers name nothing: the first row is kept out.
  (tmp_path / 'header.tsv').write_text('review\tsentiment\n' + path.read_text())
  spec, splits = sources.load_task(_data_config(
      source='file', train_file=str(tmp_path / 'header.tsv'), text_columns=('review',),
      label_column='sentiment'))
  assert sum(len(s) for s in splits.values()) == len(REVIEWS)


@pytest.mark.parametrize('first_row,overrides', [
    # The default column names, and a first row that is plainly data.
    ('a good film that I liked a lot\tpos\n', {}),
    # Column numbers, and a first row that may be a header ('label' is no label).
    ('text\tlabel\n', {'text_columns': ('0',), 'label_column': '1'}),
])
def test_undecidable_header_is_refused_naming_the_fix(tmp_path, first_row, overrides):
  path = tmp_path / 'd.tsv'
  path.write_text(first_row + ''.join(f'{t}\t{l}\n' for t, l in REVIEWS))
  with pytest.raises(KdjaxError) as e:
    sources.load_task(_data_config(source='file', train_file=str(path), **overrides))
  assert sources.NO_HEADER_FIX in str(e.value)
  assert '--config.data.header=no --config.data.text_columns="(\'0\',)" ' \
         '--config.data.label_column=1' in str(e.value)


def test_a_test_file_without_dev_file_gets_a_dev_split_carved_from_train(tmp_path):
  train, test = tmp_path / 'train.csv', tmp_path / 'test.csv'
  train.write_text('text,label\n' + ''.join(f'{t} {i},{l}\n' for i, (t, l) in enumerate(REVIEWS)))
  test.write_text('text,label\nfine,pos\nbad,neg\n')
  config = _data_config(source='file', train_file=str(train), test_file=str(test),
                        dev_fraction=0.2, split_seed=3)
  spec, splits = sources.load_task(config)
  assert set(splits) == {'train', 'dev', 'test'}
  assert splits['test'].texts_a == ['fine', 'bad'] and splits['test'].origin == str(test)
  assert len(splits['dev']) == 4 and sorted(splits['dev'].labels) == [0, 0, 1, 1]  # stratified
  assert not set(splits['dev'].texts_a) & set(splits['train'].texts_a)
  assert len(splits['train']) + len(splits['dev']) == len(REVIEWS)
  assert str(train) in splits['dev'].origin and 'seed 3' in splits['dev'].origin
  assert sources.during_training_eval_split(splits) == 'dev'
  assert sources.final_eval_split(splits) == 'test'
  again = sources.load_task(config)[1]
  assert again['dev'].texts_a == splits['dev'].texts_a  # seeded


def test_datasets_from_disk_and_hub(tmp_path, monkeypatch):
  import datasets
  features = datasets.Features({'review': datasets.Value('string'),
                                'stars': datasets.ClassLabel(names=['low', 'high'])})
  part = lambda n: datasets.Dataset.from_dict(
      {'review': [f'{t} {i}' for i, (t, _) in enumerate(REVIEWS[:n])],
       'stars': [int(l == 'pos') for _, l in REVIEWS[:n]]}, features=features)
  datasets.DatasetDict({'train': part(20), 'test': part(4)}).save_to_disk(str(tmp_path / 'dd'))
  part(20).save_to_disk(str(tmp_path / 'one'))
  columns = dict(text_columns=('review',), label_column='stars')

  spec, splits = sources.load_task(_data_config(source='disk', disk_dir=str(tmp_path / 'dd'),
                                                **columns))
  assert spec.label_names == ('low', 'high')  # the ClassLabel's order, ids kept
  assert set(splits) == {'train', 'dev', 'test'} and len(splits['test']) == 4
  np.testing.assert_array_equal(splits['test'].labels, [1, 0, 1, 0])
  assert len(splits['train']) + len(splits['dev']) == 20
  spec, splits = sources.load_task(_data_config(source='disk', disk_dir=str(tmp_path / 'one'),
                                                **columns))
  assert set(splits) == {'train', 'dev', 'test'} and sum(map(len, splits.values())) == 20

  calls = []

  def load_dataset(name, config=None):
    calls.append((name, config))
    return datasets.load_from_disk(str(tmp_path / 'dd'))
  monkeypatch.setattr(datasets, 'load_dataset', load_dataset)
  spec, splits = sources.load_task(_data_config(
      source='hub', hub_name='someone/reviews', hub_config='en',
      hub_splits=('test', '', 'train'), dev_fraction=0.5, **columns))
  assert calls == [('someone/reviews', 'en')]
  assert len(splits['test']) == 20 and len(splits['train']) + len(splits['dev']) == 4
  with pytest.raises(KdjaxError, match="no column 'text'"):
    sources.load_task(_data_config(source='disk', disk_dir=str(tmp_path / 'dd')))
  with pytest.raises(KdjaxError, match="no split 'nope'"):
    sources.load_task(_data_config(source='disk', disk_dir=str(tmp_path / 'dd'),
                                   hub_splits=('nope', '', ''), **columns))
