"""Place recognition over binary (ORB) descriptors with a vocabulary trained online.

No vocabulary is downloaded: the first keyframes' descriptors (``places.train_keyframes``, or
fewer when a query can have a candidate before: the keyframes older than ``loop.min_age_s`` cannot
match anything anyway, so waiting for them costs no loop) are clustered into ``places.vocabulary_words`` binary words by k-majority (k-means in Hamming space:
assign each descriptor to its nearest word, then set each word's bits to the majority bit of its
members; Grana et al. 2013, the clustering DBoW2-style vocabularies use for binary features).
Every keyframe then becomes a bag-of-words vector; a query scores all earlier keyframes by the
cosine of their TF-IDF vectors (IDF from the keyframes seen so far) through one sparse product.

A candidate must score at least ``places.min_score`` and, relative to the query's score against
the keyframe added just before it (the best score this place can expect, as DBoW2 normalises),
``places.min_normalized_score``; of the ``places.candidates`` best, a keyframe within
``places.separation`` keyframes of a better one is left out (the same place: verification
looks at the best one's neighbours too). The temporal-consistency check keeps a candidate only when the
``places.temporal_consistency`` previous queries (consecutive keyframes) also scored a keyframe
within ``places.temporal_window`` keyframes of it above both thresholds (whether or not that
keyframe was among their ``places.candidates`` best). Keyframes younger than the query's
``max_stamp_ns`` are never candidates (``loop.min_age_s`` of the loop-closure pipeline).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from mp_slam_ros.config import option

DescriptorArray = NDArray[np.uint8]


@dataclass(frozen=True)
class PlaceRecognitionConfig:
    """Vocabulary, scoring and temporal consistency of the place recognition."""

    vocabulary_words: int = option(1000, "binary words of the vocabulary (k-majority clusters)", 16, 100000)
    train_keyframes: int = option(40, "keyframes whose descriptors train the vocabulary (fewer when a query can have a candidate before)", 1, 10000)
    train_iterations: int = option(8, "k-majority iterations", 1, 100)
    seed: int = option(0, "seed of the vocabulary's initial words", 0, 2**31 - 1)
    candidates: int = option(5, "best-scoring keyframes returned per query", 1, 100)
    separation: int = option(4, "of the best candidates, one within this many keyframes of a better one is left out (0: none)", 0, 1000)
    min_score: float = option(0.05, "smallest TF-IDF cosine score of a candidate", 0.0, 1.0)
    min_normalized_score: float = option(0.3, "smallest score relative to the query's score against the previous keyframe", 0.0, 10.0)
    temporal_consistency: int = option(1, "previous consecutive queries that must agree (0: off)", 0, 20)
    temporal_window: int = option(4, "agreeing candidates lie within this many keyframes", 0, 1000)


@dataclass(frozen=True)
class PlaceCandidate:
    """A keyframe (by database index) that looks like the query, and its scores."""

    index: int
    score: float
    normalized_score: float


def _nearest(descriptors: DescriptorArray, words: DescriptorArray) -> NDArray[np.int64]:
    """Index ``(N,)`` of the nearest of ``words`` (Hamming) for every descriptor."""
    if len(descriptors) == 0:
        return np.zeros(0, np.int64)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).match(np.ascontiguousarray(descriptors), np.ascontiguousarray(words))
    nearest = np.empty(len(descriptors), np.int64)
    nearest[[m.queryIdx for m in matches]] = [m.trainIdx for m in matches]
    return nearest


def _spread_seeds(bits: NDArray[np.uint8], k: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """``k`` distinct row indices of ``bits`` ``(N, 256)`` chosen k-means++ style: each next seed
    with probability proportional to its squared Hamming distance to the nearest seed so far."""
    chosen = [int(rng.integers(len(bits)))]
    nearest = np.full(len(bits), np.inf)
    for _ in range(k - 1):
        nearest = np.minimum(nearest, (bits != bits[chosen[-1]]).sum(axis=1))
        weights = nearest**2
        chosen.append(int(rng.choice(len(bits), p=weights / weights.sum())))
    return np.array(chosen, np.int64)


def k_majority(descriptors: DescriptorArray, k: int, iterations: int, rng: np.random.Generator) -> DescriptorArray:
    """At most ``k`` binary centres ``(k', D)`` of the distinct ``descriptors`` by k-majority,
    seeded k-means++ style (an emptied centre is re-seeded with a random descriptor)."""
    unique = np.unique(descriptors, axis=0)
    k = min(k, len(unique))
    bits = np.unpackbits(unique, axis=1)
    centres = unique[_spread_seeds(bits, k, rng)]
    for _ in range(iterations):
        labels = _nearest(unique, centres)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros((k, bits.shape[1]), np.int64)
        np.add.at(sums, labels, bits)
        majority = np.packbits((2 * sums > counts[:, None]).astype(np.uint8), axis=1)
        empty = counts == 0
        majority[empty] = unique[rng.choice(len(unique), size=int(empty.sum()), replace=False)]
        if np.array_equal(majority, centres):
            break
        centres = majority
    return centres


class BinaryVocabulary:
    """A two-level vocabulary tree of binary words (as DBoW2's, with two levels): ``top``
    ``(B, D)`` uint8 centres, each with its leaves ``leaves[offsets[b]:offsets[b + 1]]``; the
    leaves are the words. Quantizing compares a descriptor with ``B`` + ``~B`` words instead of
    ``B^2``."""

    def __init__(self, top: DescriptorArray, leaves: DescriptorArray, offsets: NDArray[np.int64]) -> None:
        self.top = np.ascontiguousarray(top, dtype=np.uint8)
        self.leaves = np.ascontiguousarray(leaves, dtype=np.uint8)
        self.offsets = np.asarray(offsets, np.int64)

    @property
    def size(self) -> int:
        """Number of words (leaves)."""
        return int(self.leaves.shape[0])

    def quantize(self, descriptors: DescriptorArray) -> NDArray[np.int64]:
        """Word index ``(N,)`` of every descriptor ``(N, D)`` (nearest centre, then nearest leaf)."""
        descriptors = np.asarray(descriptors, np.uint8)
        branch = _nearest(descriptors, self.top)
        words = np.zeros(len(descriptors), np.int64)
        for b in np.unique(branch):
            rows = np.flatnonzero(branch == b)
            first, last = self.offsets[b], self.offsets[b + 1]
            words[rows] = first + _nearest(descriptors[rows], self.leaves[first:last])
        return words

    @classmethod
    def train(cls, descriptors: DescriptorArray, words: int, iterations: int, seed: int) -> BinaryVocabulary:
        """Cluster ``descriptors`` ``(N, D)`` into about ``words`` leaves: ``ceil(sqrt(words))``
        top centres by k-majority, then as many leaves per centre from its members."""
        rng = np.random.default_rng(seed)
        descriptors = np.asarray(descriptors, np.uint8)
        branching = int(np.ceil(np.sqrt(words)))
        top = k_majority(descriptors, branching, iterations, rng)
        branch = _nearest(descriptors, top)
        leaves = [k_majority(descriptors[branch == b], branching, iterations, rng) if np.any(branch == b) else top[b : b + 1] for b in range(len(top))]
        offsets = np.concatenate([[0], np.cumsum([len(leaf) for leaf in leaves])])
        return cls(top, np.concatenate(leaves), offsets)


class PlaceDatabase:
    """Bag-of-words rows of the keyframes added so far, scored against a query (cosine TF-IDF).

    The rows live in growing CSR arrays (word ids, term frequencies and their squares, capacity
    doubled when full), so adding a keyframe appends and a query costs two sparse
    matrix-vector products over the stored rows: the dot products with the query weighted by
    ``idf^2`` and the row norms ``sqrt(tf^2 . idf^2)`` (IDF from the keyframes seen so far).
    """

    def __init__(self, vocabulary: BinaryVocabulary) -> None:
        self.vocabulary = vocabulary
        self._indptr = np.zeros(1, np.int32)
        self._words = np.zeros(1024, np.int32)
        self._frequencies = np.zeros(1024, np.float64)
        self._squares = np.zeros(1024, np.float64)
        self._stamps_ns: list[int] = []
        self._document_frequency = np.zeros(vocabulary.size, np.float64)

    def __len__(self) -> int:
        return len(self._stamps_ns)

    def bag(self, descriptors: DescriptorArray) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Word ids and term frequencies (counts / N) of ``descriptors``."""
        words, counts = np.unique(self.vocabulary.quantize(descriptors), return_counts=True)
        return words, counts / max(len(descriptors), 1)

    def add(self, stamp_ns: int, bag: tuple[NDArray[np.int64], NDArray[np.float64]]) -> int:
        """Append a keyframe's bag (from :meth:`bag`); returns its database index."""
        words, frequencies = bag
        start = int(self._indptr[-1])
        end = start + len(words)
        if end > len(self._words):
            capacity = max(2 * len(self._words), end)
            self._words, self._frequencies, self._squares = (
                np.resize(a, capacity) for a in (self._words, self._frequencies, self._squares)
            )
        self._words[start:end] = words
        self._frequencies[start:end] = frequencies
        self._squares[start:end] = np.square(frequencies)
        self._indptr = np.append(self._indptr, np.int32(end))
        self._stamps_ns.append(int(stamp_ns))
        self._document_frequency[words] += 1.0
        return len(self._stamps_ns) - 1

    def _rows(self, values: NDArray[np.float64]) -> sp.csr_matrix:
        """The stored rows ``(M, V)`` with ``values`` (frequencies or their squares)."""
        nnz = int(self._indptr[-1])
        return sp.csr_matrix((values[:nnz], self._words[:nnz], self._indptr), shape=(len(self), self.vocabulary.size))

    def scores(self, bag: tuple[NDArray[np.int64], NDArray[np.float64]]) -> NDArray[np.float64]:
        """Cosine TF-IDF scores ``(M,)`` of the query bag against every stored keyframe."""
        if not self._stamps_ns:
            return np.zeros(0)
        idf_squared = np.square(np.log((len(self) + 1.0) / (self._document_frequency + 1.0)))
        words, frequencies = bag
        query = np.zeros(self.vocabulary.size)
        query[words] = frequencies * idf_squared[words]
        query_norm = float(np.sqrt(np.sum(np.square(frequencies) * idf_squared[words])))
        if query_norm == 0.0:
            return np.zeros(len(self))
        norms = np.sqrt(self._rows(self._squares) @ idf_squared)
        return (self._rows(self._frequencies) @ query) / (np.maximum(norms, 1e-12) * query_norm)

    def stamps_ns(self) -> NDArray[np.int64]:
        """Stamps ``(M,)`` of the stored keyframes (ns)."""
        return np.asarray(self._stamps_ns, np.int64)


class PlaceRecognizer:
    """Online place recognition: trains its vocabulary, then answers :meth:`query_and_add`."""

    def __init__(self, config: PlaceRecognitionConfig | None = None) -> None:
        self.config = config or PlaceRecognitionConfig()
        self.database: PlaceDatabase | None = None
        self._pending: list[tuple[int, DescriptorArray]] = []
        self._history: deque[tuple[int, NDArray[np.bool_]]] = deque(maxlen=max(self.config.temporal_consistency, 1))

    @property
    def vocabulary(self) -> BinaryVocabulary | None:
        """The trained vocabulary (None until ``train_keyframes`` keyframes were added)."""
        return None if self.database is None else self.database.vocabulary

    def set_vocabulary(self, vocabulary: BinaryVocabulary) -> None:
        """Use ``vocabulary`` (e.g. of a loaded map) and add the keyframes waiting for one."""
        self.database = PlaceDatabase(vocabulary)
        pending, self._pending = self._pending, []
        for stamp_ns, descriptors in pending:
            self.database.add(stamp_ns, self.database.bag(descriptors))

    def query_and_add(self, stamp_ns: int, descriptors: DescriptorArray, max_stamp_ns: int) -> tuple[int, list[PlaceCandidate]]:
        """Candidates (best first) among keyframes stamped at or before ``max_stamp_ns`` that pass
        the score thresholds and the temporal-consistency check; then the keyframe is added.

        Returns ``(index, candidates)``: the keyframe's database index (keyframes are indexed in
        the order they are added, whether or not the vocabulary exists yet) and the candidates.
        """
        index = len(self)
        if self.database is None and self._pending and self._pending[0][0] <= max_stamp_ns:
            self._train()  # a candidate is possible: train on what there is
        if self.database is None:
            self._pending.append((int(stamp_ns), np.asarray(descriptors, np.uint8)))
            if len(self._pending) >= self.config.train_keyframes:
                self._train()
            return index, []
        bag = self.database.bag(descriptors)
        candidates, similar = self._candidates(bag, max_stamp_ns)
        self.database.add(stamp_ns, bag)
        return index, self._temporally_consistent(index, candidates, similar)

    def add(self, stamp_ns: int, descriptors: DescriptorArray) -> None:
        """Add a keyframe without querying (e.g. the keyframes of a loaded map); needs a vocabulary."""
        assert self.database is not None, "set_vocabulary first"
        self.database.add(stamp_ns, self.database.bag(descriptors))

    def _train(self) -> None:
        """Train the vocabulary on the pending keyframes' descriptors (needs two at least)."""
        described = [d for _, d in self._pending if len(d)]
        stacked = np.concatenate(described) if described else np.zeros((0, 32), np.uint8)
        if len(stacked) >= 2:
            cfg = self.config
            self.set_vocabulary(BinaryVocabulary.train(stacked, cfg.vocabulary_words, cfg.train_iterations, cfg.seed))

    def __len__(self) -> int:
        return len(self._pending) if self.database is None else len(self.database)

    def _candidates(self, bag: tuple[NDArray[np.int64], NDArray[np.float64]], max_stamp_ns: int) -> tuple[list[PlaceCandidate], NDArray[np.bool_]]:
        """The best ``places.candidates`` keyframes passing the thresholds, and the mask ``(M,)``
        of every stored keyframe that passes them (for the next queries' temporal check)."""
        assert self.database is not None
        scores = self.database.scores(bag)
        if scores.size == 0:
            return [], np.zeros(0, bool)
        expected = float(scores[-1])  # the previous keyframe: the score of "the same place"
        normalized = scores / expected if expected > 0.0 else np.zeros_like(scores)
        old_enough = self.database.stamps_ns() <= max_stamp_ns
        similar = old_enough & (scores >= self.config.min_score) & (normalized >= self.config.min_normalized_score)
        order = np.argsort(-np.where(similar, scores, -np.inf), kind="stable")[: min(self.config.candidates, int(similar.sum()))]
        picked: list[int] = []
        for index in order:
            if all(abs(int(index) - other) > self.config.separation for other in picked):
                picked.append(int(index))
        return [PlaceCandidate(i, float(scores[i]), float(normalized[i])) for i in picked], similar

    def _temporally_consistent(self, index: int, candidates: list[PlaceCandidate], similar: NDArray[np.bool_]) -> list[PlaceCandidate]:
        need, window = self.config.temporal_consistency, self.config.temporal_window
        history = list(self._history)
        self._history.append((index, similar))
        if need == 0:
            return candidates
        recent = [h for h in history if h[0] >= index - need]
        if len(recent) < need:
            return []
        return [
            c for c in candidates
            if all(np.any(previous[max(c.index - window, 0) : c.index + window + 1]) for _, previous in recent)
        ]
