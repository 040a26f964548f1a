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


def test_scores_are_the_cosine_of_tf_idf_vectors() -> None:
    rng = np.random.default_rng(5)
    recognizer = PlaceRecognizer(PlaceRecognitionConfig(train_keyframes=3, vocabulary_words=64))
    keyframes = [rng.integers(0, 256, (int(rng.integers(20, 200)), 32), dtype=np.uint8) for _ in range(40)]
    for k, descriptors in enumerate(keyframes):
        recognizer.query_and_add(k, descriptors, k)
    database = recognizer.database
    assert database is not None and len(database) == 40
    bags = [database.bag(d) for d in keyframes]
    dense = np.zeros((40, database.vocabulary.size))
    for row, (words, frequencies) in enumerate(bags):
        dense[row, words] = frequencies
    idf = np.log(41.0 / ((dense > 0).sum(axis=0) + 1.0))
    weighted = dense * idf
    query = weighted[7]
    expected = weighted @ query / (np.linalg.norm(weighted, axis=1) * np.linalg.norm(query))
    assert np.allclose(database.scores(bags[7]), expected)


def test_candidates_are_distinct_places_and_need_a_similar_previous_query() -> None:
    rng = np.random.default_rng(6)
    places = [rng.integers(0, 256, (300, 32), dtype=np.uint8) for _ in range(30)]
    config = PlaceRecognitionConfig(train_keyframes=5, vocabulary_words=1024, candidates=3, separation=2, temporal_consistency=1, temporal_window=1)
    recognizer = PlaceRecognizer(config)
    for k, place in enumerate(places):  # place k shares half its descriptors with place k - 1
        mixed = place.copy()
        if k:
            mixed[:150] = places[k - 1][150:]
        places[k] = mixed
        recognizer.query_and_add(k, noisy(mixed, rng), k - 3)
    recognizer.query_and_add(30, noisy(places[20], rng), 27)
    answer = recognizer.query_and_add(31, noisy(places[21], rng), 28)[1]
    # 20, 21 and 22 look alike; 21 is the best and its neighbours within 2 keyframes are left out
    assert [c.index for c in answer] == [21]


def test_the_vocabulary_is_trained_when_a_candidate_becomes_possible() -> None:
    """Keyframes younger than the query's max stamp cannot match: the vocabulary waits for up to
    ``train_keyframes`` of them, and is trained as soon as one is old enough to be a candidate."""
    rng = np.random.default_rng(8)
    places = [rng.integers(0, 256, (300, 32), dtype=np.uint8) for _ in range(12)]
    recognizer = PlaceRecognizer(PlaceRecognitionConfig(train_keyframes=100, vocabulary_words=256))
    for k in range(8):  # min age 8: no candidate possible yet
        assert recognizer.query_and_add(k, places[k], k - 8) == (k, []) and recognizer.vocabulary is None
    index, _ = recognizer.query_and_add(8, places[8], 0)  # keyframe 0 may now be a candidate
    assert index == 8 and recognizer.vocabulary is not None and len(recognizer) == 9
