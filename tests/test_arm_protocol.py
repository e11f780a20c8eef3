"""Every registered arm keeps the same protocol: one not-fitted error, a save/load round trip with the same
scores, a defined score for ids it never saw, and a model saved for CUDA loads on a CPU machine."""

import numpy as np
import pytest
import torch

from fusionsim.recommenders import REGISTRY
from fusionsim.recommenders.base import NotFittedError, RequestBatch

TRAIN = {"epochs": 1, "progress": False, "seed": 0}


def _make(name):
    cls = REGISTRY[name]
    return cls(train=TRAIN) if "train" in cls.__init__.__code__.co_varnames else cls()


@pytest.fixture(scope="module")
def fitted(small_shop):
    world, _ = small_shop
    items = world.catalog.public()
    return {name: _make(name).fit(world.history, items) for name in REGISTRY}, world


def _requests(world, b=6):
    recent = world.population.recent_items[:b]
    return RequestBatch.feed(np.arange(b), recent)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_an_unfitted_arm_refuses_to_score(name, small_shop):
    world, _ = small_shop
    with pytest.raises(NotFittedError) as err:
        _make(name).score(_requests(world), np.zeros((6, 3), dtype=np.int32))
    assert str(err.value) == f"arm '{name}' is not fitted: call fit() or load() before score()"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_save_load_round_trip_gives_the_same_scores(name, fitted, tmp_path):
    models, world = fitted
    model = models[name]
    candidates = np.tile(np.arange(0, 40, dtype=np.int32), (6, 1))
    path = tmp_path / f"{name}.pt"
    model.save(path)
    loaded = REGISTRY[name].load(path)
    model.reset_state()
    np.testing.assert_array_equal(loaded.score(_requests(world), candidates), model.score(_requests(world), candidates))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_ids_the_arm_never_saw_get_a_finite_fallback(name, fitted):
    models, world = fitted
    n = world.catalog.n_items
    candidates = np.array([[0, n, n + 5, -1]] * 6, dtype=np.int32)
    scores = models[name].score(_requests(world), candidates)
    assert scores.shape == (6, 4) and scores.dtype == np.float32 and np.isfinite(scores).all()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_model_saved_for_cuda_loads_on_the_cpu(name, fitted, tmp_path):
    models, world = fitted
    path = tmp_path / f"{name}.pt"
    models[name].save(path)
    payload = torch.load(path, weights_only=True)
    torch_arm = isinstance(payload["config"].get("train"), dict)
    if torch_arm:
        payload["config"]["train"]["device"] = "cuda"
        torch.save(payload, path)
    candidates = np.tile(np.arange(0, 20, dtype=np.int32), (6, 1))
    expected = REGISTRY[name].load(path, device="cpu").score(_requests(world), candidates)
    if torch_arm and not torch.cuda.is_available():
        loaded = REGISTRY[name].load(path)  # no device given: the CUDA setting falls back to the CPU here
        assert loaded.device.type == "cpu"
        np.testing.assert_array_equal(loaded.score(_requests(world), candidates), expected)
    if not torch_arm:
        with pytest.raises(ValueError, match=f"^arm '{name}' runs in numpy on the CPU; device = 'cuda' is not allowed$"):
            REGISTRY[name].load(path, device="cuda")
