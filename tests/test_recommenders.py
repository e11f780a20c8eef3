import numpy as np
import pandas as pd
import pytest
import torch

from fusionsim.recommenders import InteractionTableError, NewArrivals, Popularity, RequestBatch, check_interactions
from fusionsim.recommenders.base import RECENT_ITEMS, ItemTable


def _items(n):
    return ItemTable(item_id=np.arange(n, dtype=np.int32), top=np.zeros(n, np.int32), leaf=np.zeros(n, np.int32),
                     brand=np.zeros(n, np.int32), price=np.ones(n, np.float32), tokens=np.zeros((n, 4), np.int32),
                     launch_day=np.arange(n, dtype=np.float32) - n, vocab_size=4)


def _requests(b):
    return RequestBatch.feed(np.zeros(b), np.full((b, RECENT_ITEMS), -1))


TABLE = pd.DataFrame({"user_id": [0, 1, 2, 0], "item_id": [1, 1, 2, 3], "t": [-7.0, 0.0, 0.0, -14.0],
                      "purchase": [False, True, False, False]})


def test_popularity_hand_computed():
    model = Popularity(half_life_days=7.0, purchase_weight=3.0).fit(TABLE, _items(5))
    # item 1: 1 * 0.5 (7 days old) + 3 (purchase today); item 2: 1; item 3: 0.25 (14 days); items 0, 4: 0
    expected = np.log1p([0.0, 3.5, 1.0, 0.25, 0.0]).astype(np.float32)
    np.testing.assert_allclose(model.item_score, expected, rtol=1e-6)
    scores = model.score(_requests(2), np.array([[1, 2, 3], [0, 4, 1]], dtype=np.int32))
    np.testing.assert_allclose(scores, expected[[[1, 2, 3], [0, 4, 1]]], rtol=1e-6)


def test_unknown_items_get_the_fallback_not_an_error():
    model = Popularity().fit(TABLE, _items(5))
    scores = model.score(_requests(1), np.array([[1, 99, -1]], dtype=np.int32))
    assert scores[0, 0] > 0 and scores[0, 1] == 0.0 and scores[0, 2] == 0.0
    arrivals = NewArrivals().fit(None, _items(5))
    np.testing.assert_array_equal(arrivals.score(_requests(1), np.array([[0, 4, 50]], dtype=np.int32)),
                                  [[-5.0, -1.0, -1.0]])


@pytest.mark.parametrize("model", [Popularity(half_life_days=3.0), NewArrivals()])
def test_save_load_round_trip(model, tmp_path):
    model.fit(TABLE, _items(5))
    path = tmp_path / f"{model.name}.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    assert payload["name"] == model.name and payload["config"] == model.config()
    loaded = type(model).load(path)
    candidates = np.array([[0, 1, 2, 3, 4]], dtype=np.int32)
    np.testing.assert_array_equal(loaded.score(_requests(1), candidates), model.score(_requests(1), candidates))
    with pytest.raises(ValueError, match="holds a"):
        (NewArrivals if isinstance(model, Popularity) else Popularity).load(path)


BAD_TABLES = [
    (TABLE.iloc[:0], "interactions table is empty: nothing to fit on"),
    (TABLE.drop(columns="item_id"), "interactions table has no column 'item_id' (integer item id >= 0); "
                                    "columns are ['user_id', 't', 'purchase']"),
    (TABLE.assign(user_id=[0.5, 1, 2, 3]), "interactions column 'user_id' has dtype float64: must be integer"),
    (TABLE.assign(item_id=[1, -2, 2, 3]), "interactions column 'item_id' has negative id -2 at row 1"),
    (TABLE.assign(t=[0.0, np.nan, 0.0, 0.0]), "interactions column 't' must hold finite numbers (days)"),
    (TABLE.assign(purchase=[0, 1, 0, 0]), "interactions column 'purchase' has dtype int64: must be bool"),
]


@pytest.mark.parametrize("table, message", BAD_TABLES, ids=[m[:30] for _, m in BAD_TABLES])
def test_malformed_interactions_name_the_column(table, message):
    with pytest.raises(InteractionTableError) as err:
        check_interactions(table)
    assert str(err.value) == message


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"^half_life_days must be > 0; got 0$"):
        Popularity(half_life_days=0)
