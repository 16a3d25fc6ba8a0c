"""The scoring classifier: training, the on-disk cache, safe loading, bad checkpoints."""

import pytest
import torch

from gridstudy.classifier import (
    Classifier,
    ConvNet,
    Scorer,
    classifier_path,
    load_or_train_classifier,
    train_classifier,
)
from gridstudy.data import Dataset
from gridstudy.errors import UserError


@pytest.fixture(scope="module")
def small(mnist5k):
    return Dataset("small", mnist5k.train_x, mnist5k.train_y, mnist5k.test_x[:500],
                   mnist5k.test_y[:500])


def test_training_learns_the_digits(small):
    classifier = train_classifier(small, epochs=2)
    assert classifier.test_accuracy > 0.9  # chance is 0.1; the default 15 epochs reach ~0.97
    probs, features = classifier.predict(small.test_x[:10])
    assert probs.shape == (10, 10) and features.shape == (10, 512)
    assert abs(probs.sum(1) - 1).max() < 1e-9


def test_cache_round_trip_with_weights_only(small, monkeypatch):
    first = load_or_train_classifier(small, epochs=1)
    path = classifier_path(small, 1)
    assert path.exists()
    torch.load(path, weights_only=True)  # tensors and plain values only: no pickle of code
    calls = []
    monkeypatch.setattr("gridstudy.classifier.train_classifier", lambda *a, **k: calls.append(1))
    second = load_or_train_classifier(small, epochs=1)
    assert not calls and second.test_accuracy == first.test_accuracy


def test_mismatched_and_corrupt_checkpoints_are_one_line_errors(small):
    path = classifier_path(small, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = Classifier(ConvNet(), "small", small.fingerprint(), 0.5).state()
    state["state_dict"]["fc.weight"] = torch.zeros(3, 3)
    torch.save(state, path)
    with pytest.raises(UserError, match="checkpoint does not match the classifier"):
        load_or_train_classifier(small, epochs=3)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupt classifier checkpoint"):
        load_or_train_classifier(small, epochs=3)
    torch.save({"version": 99}, path)
    with pytest.raises(UserError, match="version mismatch"):
        load_or_train_classifier(small, epochs=3)


def test_scorer_from_features_matches(small):
    classifier = Classifier(ConvNet().eval(), "small", "fp", 0.0)
    a = Scorer(classifier, small.test_x[:100])
    b = Scorer.from_features(classifier, a.real_features)
    samples = small.train_x[:100]
    assert a.score(samples) == b.score(samples)


def test_scoring_layout_computes_the_training_features(small):
    """Scoring runs the convolutions channels-last with ReLU after pooling: the same function
    as the training layout, to the convolutions' rounding, in the training layout's order."""
    torch.manual_seed(0)
    net = ConvNet()
    x = small.test_x[:64]
    with torch.no_grad():
        trained_layout = net.train().features(x)
        scoring_layout = net.eval().features(x)
    assert scoring_layout.shape == (64, 512) and scoring_layout.is_contiguous()
    assert (scoring_layout >= 0).all()
    torch.testing.assert_close(scoring_layout, trained_layout, rtol=1e-5, atol=1e-5)
