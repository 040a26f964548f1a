"""Binary vocabulary (k-majority tree) and place queries on random ORB-like descriptors."""

from __future__ import annotations

import numpy as np

from mp_slam_ros.backend.place_recognition import BinaryVocabulary, PlaceRecognitionConfig, PlaceRecognizer, k_majority


def noisy(descriptors: np.ndarray, rng: np.random.Generator, bits: int = 4) -> np.ndarray:
    out = descriptors.copy()
    for _ in range(bits):
        flip = rng.integers(0, 256, len(out))
        out[np.arange(len(out)), flip // 8] ^= (1 << (flip % 8)).astype(np.uint8)
    return out


def test_k_majority_recovers_well_separated_centres() -> None:
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (8, 32), dtype=np.uint8)
    members = np.concatenate([noisy(np.repeat(centres[i : i + 1], 50, axis=0), rng, 6) for i in range(8)])
    found = k_majority(members, 8, 10, np.random.default_rng(1))
    distances = np.unpackbits(found[:, None, :] ^ centres[None, :, :], axis=2).sum(axis=2)
    assert np.all(distances.min(axis=1) <= 2) and len(np.unique(distances.argmin(axis=1))) == 8


def test_vocabulary_tree_quantizes_a_descriptor_to_its_own_word() -> None:
    rng = np.random.default_rng(2)
    descriptors = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    vocabulary = BinaryVocabulary.train(descriptors, 400, 5, 0)
    assert 300 <= vocabulary.size <= 441 and vocabulary.offsets[-1] == vocabulary.size
    words = vocabulary.quantize(vocabulary.leaves)
    assert np.mean(words == np.arange(vocabulary.size)) > 0.9  # a leaf may lie nearer another branch's centre


def test_revisited_place_is_the_best_candidate_and_young_keyframes_are_excluded() -> None:
    rng = np.random.default_rng(3)
    places = [rng.integers(0, 256, (300, 32), dtype=np.uint8) for _ in range(20)]
    recognizer = PlaceRecognizer(PlaceRecognitionConfig(train_keyframes=5, vocabulary_words=1024, min_score=0.35, temporal_consistency=1, temporal_window=1))
    for k, place in enumerate(places):
        assert recognizer.query_and_add(k, noisy(place, rng), k - 3) == (k, []) or k >= 5
    answers = [recognizer.query_and_add(20 + k, noisy(places[k], rng), 20 + k - 3)[1] for k in (7, 8, 9)]
    assert answers[0] == []  # the first revisit has no agreeing previous query yet
    assert [a[0].index for a in answers[1:]] == [8, 9]
    # with a max stamp before every stored keyframe nothing is a candidate
    assert recognizer.query_and_add(100, noisy(places[10], rng), -1)[1] == []
