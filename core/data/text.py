"""Text: a reproducible word tokenizer whose vocabulary is built on the training split (and stored
with the model as JSON), the ``toy_text`` generator, and the bundled synonym table that
``synonym_replace`` maps token ids through. Nothing is downloaded."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from core.data.dataset import Dataset

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
TOKEN_PATTERN = r"[a-z0-9']+|[.!?]"
SENTENCE_ENDS = (".", "!", "?")

# Small hand-written synonym groups (every word of a group may replace every other one).
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("good", "nice", "fine", "decent"),
    ("great", "excellent", "wonderful", "brilliant", "superb"),
    ("enjoyable", "pleasant", "delightful"),
    ("bad", "poor", "weak"),
    ("awful", "terrible", "horrible", "dreadful"),
    ("boring", "dull", "tedious"),
    ("movie", "film", "picture"),
    ("story", "plot", "script"),
    ("acting", "performances", "cast"),
    ("music", "soundtrack", "score"),
    ("ending", "finale", "conclusion"),
    ("really", "very", "truly", "quite"),
    ("was", "seemed", "felt"),
    ("watched", "saw", "viewed"),
    ("loved", "adored", "liked"),
    ("hated", "disliked", "loathed"),
    ("friend", "pal", "buddy"),
    ("yesterday", "recently", "lately"),
    ("home", "house"),
)


@dataclass
class Tokenizer:
    """Lower-cased words and sentence marks; ids 0 = padding, 1 = unknown, then the vocabulary by
    falling frequency (ties alphabetical) in the texts it was built on. Sequences are cut to
    ``max_length`` tokens and left-padded, so a recurrent model's last step is the last word."""

    vocab: list[str]
    max_length: int

    def __post_init__(self) -> None:
        self.index = {token: i for i, token in enumerate(self.vocab)}

    @staticmethod
    def tokens(text: str) -> list[str]:
        return re.findall(TOKEN_PATTERN, text.lower())

    @classmethod
    def build(cls, texts: list[str], *, max_length: int, max_vocab: int = 20_000) -> Tokenizer:
        counts = Counter(token for text in texts for token in cls.tokens(text))
        ordered = sorted(counts, key=lambda token: (-counts[token], token))[: max_vocab - 2]
        longest = max((len(cls.tokens(text)) for text in texts), default=1)
        return cls([PAD, UNK, *ordered], max(1, min(max_length, longest)))

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(N, max_length) int64 ids, left-padded with 0; unknown words are 1."""
        ids = torch.zeros((len(texts), self.max_length), dtype=torch.int64)
        for row, text in enumerate(texts):
            tokens = [self.index.get(token, UNK_ID) for token in self.tokens(text)][: self.max_length]
            if tokens:
                ids[row, self.max_length - len(tokens) :] = torch.tensor(tokens)
        return ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [" ".join(self.vocab[i] for i in row if i != PAD_ID) for row in ids.tolist()]

    def sentence_end_ids(self) -> list[int]:
        return [self.index[mark] for mark in SENTENCE_ENDS if mark in self.index]

    def synonym_table(self) -> torch.Tensor:
        """(V, K) int64: row i lists ids that may replace token i (itself when it has no synonym
        in the vocabulary); a random column picks the replacement."""
        width = max(len(group) for group in SYNONYMS) - 1
        table = torch.arange(len(self.vocab)).unsqueeze(1).repeat(1, width)
        for group in SYNONYMS:
            present = [self.index[word] for word in group if word in self.index]
            for token in present:
                others = [other for other in present if other != token]
                if others:
                    table[token] = torch.tensor([others[i % len(others)] for i in range(width)])
        return table

    def to_json(self) -> str:
        return json.dumps({"vocab": self.vocab, "max_length": self.max_length, "pattern": TOKEN_PATTERN})

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        data: dict[str, Any] = json.loads(text)
        return cls(list(data["vocab"]), int(data["max_length"]))


def encode_dataset(data: Dataset, train_index: np.ndarray, *, max_length: int) -> Dataset:
    """The text data set as token ids, with a vocabulary built on the rows in ``train_index`` only."""
    assert data.texts is not None, "encode_dataset needs raw texts"
    tokenizer = Tokenizer.build([data.texts[i] for i in train_index.tolist()], max_length=max_length)
    return Dataset(tokenizer.encode(data.texts), data.y, "text", data.classes, data.texts, tokenizer, data.report)


# --- toy_text: short reviews of two sentiments, generated from a small vocabulary -------------------

_SUBJECTS = ("the movie", "this film", "the story", "the plot", "the acting", "the music", "the ending", "the cast")
_VERBS = ("was", "is", "seemed", "felt")
_ADVERBS = ("", "", "really ", "very ", "quite ", "truly ")
_POSITIVE = ("good", "great", "excellent", "wonderful", "enjoyable", "brilliant", "fine", "superb", "delightful")
_NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "poor", "horrible", "dreadful", "tedious")
_LOVED = ("i loved it", "we adored every minute", "i would watch it again", "my friend liked it too")
_HATED = ("i hated it", "we disliked every minute", "i would never watch it again", "my friend loathed it too")
_NEUTRAL = (
    "i watched it yesterday",
    "we saw it at home",
    "it is two hours long",
    "my friend picked it",
    "the cinema was full",
    "we had popcorn",
)


def toy_text(n_samples: int, seed: int, noise: float) -> tuple[list[str], np.ndarray]:
    """``n_samples`` reviews of 1-3 sentences, label 1 positive / 0 negative; a sentence may be
    negated ('was not good' is negative). ``noise`` is the fraction of labels flipped at random."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    texts = []
    for label in labels.tolist():
        negate = rng.random() < 0.2
        words = _POSITIVE if label != negate else _NEGATIVE
        verb = _VERBS[rng.integers(len(_VERBS))]
        sentences = [
            f"{_SUBJECTS[rng.integers(len(_SUBJECTS))]} {verb} {'not ' if negate else ''}"
            f"{_ADVERBS[rng.integers(len(_ADVERBS))]}{words[rng.integers(len(words))]}"
        ]
        extra = rng.integers(0, 3)
        for _ in range(extra):
            pool = _NEUTRAL if rng.random() < 0.5 else (_LOVED if label else _HATED)
            sentences.insert(int(rng.integers(0, len(sentences) + 1)), pool[rng.integers(len(pool))])
        texts.append(" ".join(s + (" !" if rng.random() < 0.1 else " .") for s in sentences))
    flip = rng.random(n_samples) < noise
    return texts, np.where(flip, 1 - labels, labels)
