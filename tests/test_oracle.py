import numpy as np
from click.testing import CliRunner

from fusionsim.envs.context import CELL_NAMES, CONTEXT_DIM, N_CELLS, context_cell
from fusionsim.envs.shop import make_shop
from fusionsim.experiments.cli import cli
from fusionsim.experiments.oracle import CellTablePolicy, GridSearch, grid_search
from tests.conftest import small_scenario


def test_context_cells_cover_segment_surface_and_history():
    contexts = np.zeros((3, CONTEXT_DIM), dtype=np.float32)
    contexts[:, 0] = 1.0
    contexts[0, 3] = 1.0  # loyal, feed, no purchase
    contexts[1, [4, 5]] = 1.0  # bargain, search
    contexts[1, 11] = np.log1p(3) / np.log1p(50)  # 3 purchases
    contexts[2, 1] = 1.0  # new
    contexts[2, 11] = 1.0  # 50+ purchases
    assert [CELL_NAMES[c] for c in context_cell(contexts)] == ["loyal/feed/0", "bargain/search/1-5", "new/feed/6+"]


def test_oracle_table_picks_the_best_blend_per_cell_and_falls_back_when_unseen():
    grid = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    by_cell = np.zeros((3, N_CELLS))
    by_cell[1, 0] = 1.0  # blend 1 best in cell 0
    by_cell[2, 1] = 2.0  # blend 2 best in cell 1
    counts = np.full((3, N_CELLS), 500.0)
    counts[:, 2] = 10.0  # cell 2 barely seen
    search = GridSearch(overall=np.array([0.3, 0.2, 0.25]), by_cell=by_cell, cell_requests=counts, grid=grid)
    table = search.oracle_table(min_requests=200)
    assert table[0] == 1 and table[1] == 2 and table[2] == 0  # unseen cell -> best global (blend 0)
    assert search.best_global == 0 and search.best_single_arm == 0
    policy = CellTablePolicy(table.tolist())
    contexts = np.zeros((1, CONTEXT_DIM), dtype=np.float32)
    contexts[0, 1] = 1.0  # cell 0: new/feed/0
    assert policy.act(contexts)[0][0] == 1


def test_grid_search_uses_common_random_numbers():
    scenario = small_scenario()
    world, arms = make_shop(scenario)
    a = grid_search(world, arms, resolution=2, requests=2048, seed=5)
    b = grid_search(world, arms, resolution=2, requests=2048, seed=5)
    np.testing.assert_array_equal(a.overall, b.overall)
    assert a.overall.shape == (3,) and a.by_cell.shape == (3, N_CELLS)
    np.testing.assert_array_equal(a.cell_requests[:, :].sum(axis=1), 2048)


def test_explain_writes_a_table_and_a_heat_map(tmp_path):
    import yaml
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--scenario", str(path), "--agent", "linucb", "--requests", "5120",
                                      "--slots", "128", "--log-every", "2560", "--checkpoint-every", "5120",
                                      "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["explain", str(run), "--requests", "2048"])
    assert result.exit_code == 0, result.output
    assert (run / "explain.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| new/feed/0 |" in (run / "explain.md").read_text()
    missing = CliRunner().invoke(cli, ["explain", str(tmp_path / "nothing")])
    assert missing.exit_code == 2
    assert missing.output.strip() == (f"Error: explain {tmp_path / 'nothing'} does not exist or is not a folder; give "
                                      "a fusionsim train or fusionsim train-stacker or fusionsim compare run folder")
