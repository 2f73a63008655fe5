"""The student vocabulary: merges by hand on a tiny corpus, ties broken by the
pieces, and one corpus giving one vocabulary in any process."""
import os
import subprocess
import sys

from kdjax.data import wordpiece
from tests.conftest import REPO

SPECIALS = ('[PAD]', '[UNK]')


def test_merges_by_hand():
  counts = wordpiece.words_of(['AA aa aa, ab'])  # lower-cased; the comma is a word
  assert counts == {'aa': 3, 'ab': 1, ',': 1}
  # Pieces: a ##a (x3), a ##b (x1), ','; pairs (a, ##a) = 3, (a, ##b) = 1.
  vocab = wordpiece.learn_vocabulary(counts, 100, SPECIALS, min_frequency=1)
  assert vocab == ['[PAD]', '[UNK]', '##a', '##b', ',', 'a', 'aa', 'ab']
  assert wordpiece.learn_vocabulary(counts, 100, SPECIALS, min_frequency=2)[-1] == 'aa'
  # The size bounds the merges (the characters are always in).
  assert wordpiece.learn_vocabulary(counts, 7, SPECIALS, min_frequency=1)[-1] == 'aa'
  assert wordpiece.learn_vocabulary(counts, 6, SPECIALS, min_frequency=1)[-1] == 'a'


def test_ties_go_to_the_smallest_pair_and_pieces_inside_words_merge_too():
  counts = {'cd': 2, 'ab': 2, 'xyy': 1}
  vocab = wordpiece.learn_vocabulary(counts, 100, (), min_frequency=1)
  merges = vocab[len({'a', '##b', 'c', '##d', 'x', '##y'}):]
  assert merges[:2] == ['ab', 'cd']  # equal counts: (a, ##b) < (c, ##d)
  assert '##yy' in merges or 'xy' in merges


CORPUS = [f'the {w} sat on the {v} mat near {w}{v} station in {t}' for w in
          ('cat', 'dog', 'bird', 'cow', 'hen', 'fox', 'owl', 'pig') for v in
          ('red', 'big', 'old', 'wet', 'shy') for t in ('june', 'march', 'winter')]

SCRIPT = ('import sys, hashlib; from kdjax.data import vocab; '
          'from tests.test_wordpiece import CORPUS; '
          'p = vocab.train_wordpiece(CORPUS, 120, sys.argv[1]); '
          'print(hashlib.md5(open(p + "/vocab.txt", "rb").read()).hexdigest())')


def test_one_corpus_gives_one_vocabulary_in_any_process(tmp_path):
  digests = []
  for hash_seed in ('1', '2', '3'):
    env = {**os.environ, 'PYTHONHASHSEED': hash_seed}
    out = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path / hash_seed)], cwd=REPO,
                         env=env, capture_output=True, text=True, check=True)
    digests.append(out.stdout.strip().splitlines()[-1])
  assert len(set(digests)) == 1, digests
  with open(tmp_path / '1' / 'vocab.txt', encoding='utf-8') as f:
    tokens = f.read().split('\n')[:-1]
  assert len(tokens) == 120 and len(set(tokens)) == 120
  assert 'the' in tokens and 'station' in tokens  # frequent words become one piece
