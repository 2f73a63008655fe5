"""A WordPiece vocabulary learnt deterministically from a corpus.

The `tokenizers` trainer breaks ties between equally frequent merges by hash
order, which is randomised per process: the same corpus gave vocabularies that
differ in a few tokens and in token order from run to run, so a student run
could not be reproduced from its config. This trainer is the same procedure
(BERT normalisation and pre-tokenisation, then merges of the most frequent
adjacent pieces, `##` marking a piece inside a word) with ties broken by the
pieces themselves, so one corpus always gives one vocabulary.
"""
from __future__ import annotations

import collections
import heapq
from typing import Iterable

Pair = tuple[str, str]


def words_of(texts: Iterable[str], lowercase: bool = True) -> collections.Counter:
  """Word frequencies of `texts`, as a BERT tokenizer normalises and splits them."""
  from tokenizers.normalizers import BertNormalizer
  from tokenizers.pre_tokenizers import BertPreTokenizer
  normalizer = BertNormalizer(lowercase=lowercase)
  splitter = BertPreTokenizer()
  counts = collections.Counter()
  for text in texts:
    counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
  return counts


def _merged(a: str, b: str) -> str:
  return a + (b[2:] if b.startswith('##') else b)


def _pairs(symbols: list[str]) -> list[Pair]:
  return list(zip(symbols, symbols[1:]))


def learn_vocabulary(word_counts: dict[str, int], vocab_size: int, specials: tuple[str, ...],
                     min_frequency: int = 2) -> list[str]:
  """`specials`, every character (and its `##` form inside words), then merged
  pieces in the order they were merged, up to `vocab_size` tokens.

  Each merge joins the adjacent pair with the highest count over the corpus
  (the lexicographically smallest pair among equals); merging stops at
  `vocab_size` or when no pair occurs `min_frequency` times.
  """
  words = sorted(word_counts)
  freq = [word_counts[w] for w in words]
  symbols = [[w[0]] + ['##' + c for c in w[1:]] for w in words]
  vocab = list(specials) + sorted({s for syms in symbols for s in syms} - set(specials))
  known = set(vocab)
  count: dict[Pair, int] = collections.defaultdict(int)
  where: dict[Pair, set[int]] = collections.defaultdict(set)
  for i, syms in enumerate(symbols):
    for pair in _pairs(syms):
      count[pair] += freq[i]
      where[pair].add(i)
  heap = [(-c, pair) for pair, c in count.items()]
  heapq.heapify(heap)
  while len(vocab) < vocab_size and heap:
    negative, pair = heapq.heappop(heap)
    if count.get(pair, 0) != -negative:
      continue  # a stale entry: the pair's count changed since it was pushed
    if -negative < min_frequency:
      break
    new = _merged(*pair)
    if new not in known:
      vocab.append(new)
      known.add(new)
    changed = set()
    for i in sorted(where.pop(pair)):
      old = symbols[i]
      for p in _pairs(old):
        count[p] -= freq[i]
        changed.add(p)
      merged, j = [], 0
      while j < len(old):
        if j + 1 < len(old) and (old[j], old[j + 1]) == pair:
          merged.append(new)
          j += 2
        else:
          merged.append(old[j])
          j += 1
      symbols[i] = merged
      for p in _pairs(merged):
        count[p] += freq[i]
        where[p].add(i)
        changed.add(p)
    count.pop(pair, None)
    for p in sorted(changed - {pair}):
      if count.get(p, 0) > 0:
        heapq.heappush(heap, (-count[p], p))
      else:
        count.pop(p, None)
        where.pop(p, None)
  return vocab
