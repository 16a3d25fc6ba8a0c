"""Shared fixtures: a private cache with an untrained classifier, so no test trains one."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Point GRIDSTUDY_CACHE_DIR at a test-only folder holding an untrained mnist5k classifier.

    Scores from an untrained network are meaningless but well defined: the tests check the
    plumbing; the classifier's own training is tested on a small subset in test_classifier.py.
    """
    cache = tmp_path_factory.mktemp("cache")
    os.environ["GRIDSTUDY_CACHE_DIR"] = str(cache)
    from gridstudy.classifier import Classifier, ConvNet, classifier_path
    from gridstudy.data import load_dataset

    data = load_dataset("mnist5k")
    torch.manual_seed(0)
    classifier = Classifier(ConvNet().eval(), data.name, data.fingerprint(), 0.0)
    torch.save(classifier.state(), classifier_path(data))
    return cache


@pytest.fixture(scope="session")
def mnist5k():
    from gridstudy.data import load_dataset

    return load_dataset("mnist5k")


@pytest.fixture(scope="session")
def scorer(mnist5k):
    from gridstudy.classifier import Scorer, prepare_classifier

    return Scorer(prepare_classifier("mnist5k", data=mnist5k), mnist5k.test_x[:300])
