"""Bad input end to end: scenario files as YAML spells them, files that are not scenarios, worlds too large
to build, and actions the environments must refuse rather than serve."""

import gymnasium as gym
import numpy as np
import pytest
from click.testing import CliRunner

import fusionsim.envs  # noqa: F401  (registers the environments)
from fusionsim.envs.scenario import (MAX_N_ITEMS, MAX_N_USERS, MAX_WORLD_GIB, ScenarioError, WorldParams,
                                     load_scenario)
from fusionsim.envs.vec_env import FusionVecEnv
from fusionsim.experiments.cli import cli

# What YAML 1.1 (PyYAML) makes of a number as written, and the line the scenario fails with.
YAML_NUMBERS = [
    (".nan", "behaviour.attraction_bias = nan is not allowed: must be a finite number"),
    (".NaN", "behaviour.attraction_bias = nan is not allowed: must be a finite number"),
    (".inf", "behaviour.attraction_bias = inf is not allowed: must be a finite number"),
    ("+.inf", "behaviour.attraction_bias = inf is not allowed: must be a finite number"),
    ("-.inf", "behaviour.attraction_bias = -inf is not allowed: must be a finite number"),
    (".Inf", "behaviour.attraction_bias = inf is not allowed: must be a finite number"),
    ("1.0e+400", "behaviour.attraction_bias = inf is not allowed: must be a finite number"),  # overflows to inf
    ("-1.0e+400", "behaviour.attraction_bias = -inf is not allowed: must be a finite number"),
    ("nan", "behaviour.attraction_bias = 'nan' is not allowed: must be a number"),  # text in YAML
    ("NaN", "behaviour.attraction_bias = 'NaN' is not allowed: must be a number"),
    ("inf", "behaviour.attraction_bias = 'inf' is not allowed: must be a number"),
    ("1e400", "behaviour.attraction_bias = '1e400' is not allowed: must be a number"),  # text: no dot
    ("1.0e400", "behaviour.attraction_bias = '1.0e400' is not allowed: must be a number"),  # text: unsigned exponent
    ("-4e-1", "behaviour.attraction_bias = '-4e-1' is not allowed: must be a number (YAML reads -4e-1 as text: write "
              "-4.0e-1)"),
    ("1.0e+7", "behaviour.attraction_bias = 10000000.0 is not allowed: must be in [-1e+06, 1e+06]"),
    ("'-4.8'", "behaviour.attraction_bias = '-4.8' is not allowed: must be a number"),
    ("[-4.8]", "behaviour.attraction_bias = [-4.8] is not allowed: must be a number"),
    ("2024-01-01", "behaviour.attraction_bias = datetime.date(2024, 1, 1) is not allowed: must be a number"),
]


@pytest.mark.parametrize("spelled, problem", YAML_NUMBERS, ids=[s for s, _ in YAML_NUMBERS])
def test_yaml_spellings_of_non_finite_numbers_fail_on_load(tmp_path, spelled, problem):
    path = tmp_path / "shop.yaml"
    path.write_text(f"name: shop\nbehaviour:\n  attraction_bias: {spelled}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"scenario 'shop.yaml': {problem}"


def test_yaml_numbers_that_are_fine_still_load(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("behaviour:\n  attraction_bias: -4.0e+0\n  purchase_bias: -5\n"
                    "traffic:\n  device_shares: {desktop: 0.25, mobile: 0.5, app: 0.25}\n")
    scenario = load_scenario(path)
    assert scenario.behaviour.attraction_bias == -4.0 and scenario.behaviour.purchase_bias == -5.0
    assert scenario.traffic.device_shares["mobile"] == 0.5


def test_nan_inside_a_mapping_of_a_yaml_file(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("traffic:\n  device_shares: {desktop: 0.3, mobile: .nan, app: 0.2}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == ("scenario 'shop.yaml': traffic.device_shares.mobile = nan is not allowed: must be a "
                              "finite number")


FILES = [
    (b"name: shop\nworld:\n  n_items: 5000\xff\n",
     "not UTF-8 text (byte 0xff at line 3); save the file as UTF-8"),
    ("name: caf\u00e9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at line 1); save the file as UTF-8"),
    (b"", "the file is empty; must be a YAML mapping of scenario fields, e.g. 'name: my_shop'"),
    (b"  \n\n", "the file is empty; must be a YAML mapping of scenario fields, e.g. 'name: my_shop'"),
    (b"# the default shop, for now\n",
     "the file holds no settings (only comments or null); must be a YAML mapping of scenario fields, e.g. "
     "'name: my_shop'"),
    (b"null\n", "the file holds no settings (only comments or null); must be a YAML mapping of scenario fields, "
                "e.g. 'name: my_shop'"),
    (b"- name: shop\n", "top level is list, not allowed: must be a mapping"),
    (b"default\n", "top level is str, not allowed: must be a mapping"),
    (b"42\n", "top level is int, not allowed: must be a mapping"),
    (b"world: {n_items: [1, 2\n",
     "not valid YAML at line 2, column 1: while parsing a flow sequence, expected ',' or ']', but got '<stream end>'"),
    (b"world:\n\tn_items: 5\n",
     "not valid YAML at line 2, column 1: while scanning for the next token, found character '\\t' that cannot "
     "start any token"),
    (b"name: a: b\n", "not valid YAML at line 1, column 8: mapping values are not allowed here"),
    (b"name: a\n---\nname: b\n",
     "not valid YAML at line 2, column 1: expected a single document in the stream, but found another document"),
    (b"name: !!python/object:os.system x\n",
     "not valid YAML at line 1, column 7: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object:os.system'"),
    (b"name: a\x00b\n", "not valid YAML at line 1: character #x0000 is not allowed in YAML"),
    (b"world:\n  n_items: 500\n  n_users: 9\n  n_items: 600\n",
     "not valid YAML at line 4, column 3: while constructing a mapping, found duplicate key 'n_items'"),
    (b"name: a\nname: b\n", "not valid YAML at line 2, column 1: while constructing a mapping, found duplicate key "
                            "'name'"),
    (b"world:\n  n_items: " + b"1" * 5000 + b"\n",
     "not valid YAML: an integer has more than 4300 digits"),
    (b"events:\n  - {day: 2024-13-01, kind: trend_shift}\n",
     "not valid YAML: a value cannot be built (month must be in 1..12)"),
    (b"name: " + b"[" * 100_000 + b"\n", "not valid YAML: maximum recursion depth exceeded"),
    (b"\xef\xbb\xbfname: [\n", "not valid YAML at line 2, column 1: while parsing a flow node, expected the node "
                               "content, but found '<stream end>'"),
]


@pytest.mark.parametrize("data, problem", FILES, ids=[p[:40] for _, p in FILES])
def test_files_that_are_not_scenarios_fail_with_one_line(tmp_path, data, problem):
    path = tmp_path / "shop.yaml"
    path.write_bytes(data)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == f"scenario 'shop.yaml': {problem}"


def test_a_utf8_file_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_bytes("\ufeffname: caf\u00e9\n".encode())
    assert load_scenario(path).name == "caf\u00e9"


def test_a_directory_and_a_missing_file_are_named(tmp_path):
    folder = tmp_path / "scenarios.yaml"
    folder.mkdir()
    for given in (folder, str(folder), tmp_path):
        with pytest.raises(ScenarioError) as err:
            load_scenario(given)
        assert str(err.value) == f"scenario '{given}': is a directory, not a YAML file"
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path / "missing.yml")
    assert str(err.value) == f"scenario '{tmp_path / 'missing.yml'}': no such file"


def test_a_shipped_name_is_not_shadowed_by_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "default").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_scenario("default").name == "default"


def test_an_override_below_a_value_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("world: 5000\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path, **{"world.n_items": 6000})
    assert str(err.value) == "scenario 'shop.yaml': cannot set world.n_items: world = 5000 is not a mapping"


def test_cli_refuses_a_nan_scenario_with_exit_code_2(tmp_path):
    """A NaN attraction used to simulate with a CTR of 0 and exit 0."""
    path = tmp_path / "nan.yaml"
    path.write_text("name: nan\nbehaviour:\n  attraction_bias: .nan\n")
    result = CliRunner().invoke(cli, ["simulate", "--scenario", str(path), "--requests", "10",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (
        "Error: scenario 'nan.yaml': behaviour.attraction_bias = nan is not allowed: must be a finite number")
    assert not (tmp_path / "run" / "config.yaml").exists()


def _segments_with_history(purchases: float) -> dict:
    return {name: {**s.model_dump(), "history_purchases": purchases} for name, s in WorldParams().segments.items()}


OVERSIZED = [
    ({"world.n_users": 1_000_000_000},
     "world.n_users = 1000000000 is not allowed: must be <= 100,000,000; a world of 5,000 items x 1,000,000,000 "
     "shoppers with latent_dim 16 and 4.05 past purchases per shopper would take about 536 GiB to build"),
    ({"world.n_items": 50_000_000_000},
     "world.n_items = 50000000000 is not allowed: must be <= 10,000,000; a world of 50,000,000,000 items x 20,000 "
     "shoppers with latent_dim 16 and 4.05 past purchases per shopper would take about 6,240 GiB to build"),
    ({"world.latent_dim": 100_000},
     "world.latent_dim = 100000 is not allowed: must be <= 1,024; a world of 5,000 items x 20,000 shoppers with "
     "latent_dim 100,000 and 4.05 past purchases per shopper would take about 24 GiB to build"),
    ({"world.n_users": 100_000_000, "world.latent_dim": 64},
     "world of 5,000 items x 100,000,000 shoppers with latent_dim 64 and 4.05 past purchases per shopper is not "
     "allowed: it would take about 107 GiB to build; must take at most 64 GiB (fewer items or shoppers, a smaller "
     "latent_dim or fewer past purchases)"),
    ({"world.n_users": 10_000_000, "world.segments": _segments_with_history(100.0)},
     "world of 5,000 items x 10,000,000 shoppers with latent_dim 16 and 100 past purchases per shopper is not "
     "allowed: it would take about 68 GiB to build; must take at most 64 GiB (fewer items or shoppers, a smaller "
     "latent_dim or fewer past purchases)"),
    ({"world.n_brands": 2_000_000}, "world.n_brands = 2000000 is not allowed: must be <= 1,000,000"),
    ({"world.n_attribute_words": 10**9}, "world.n_attribute_words = 1000000000 is not allowed: must be <= 1,000,000"),
    ({"candidates.n_candidates": 20_000}, "candidates.n_candidates = 20000 is not allowed: must be <= 10,000"),
]


@pytest.mark.parametrize("overrides, problem", OVERSIZED, ids=[p[:30] for _, p in OVERSIZED])
def test_oversized_worlds_fail_on_load_with_the_memory_they_would_take(overrides, problem):
    with pytest.raises(ScenarioError) as err:
        load_scenario("default", **overrides)
    assert str(err.value) == f"scenario 'default': {problem}"


def test_size_bounds_admit_the_benchmark_world_and_the_largest_allowed_one():
    """The world of benchmarks/world_scale.py (peak RSS 5.1 GiB measured) and the bounds themselves load."""
    bench = load_scenario("default", **{"world.n_items": 1_000_000, "world.n_users": 10_000_000,
                                        "world.n_top_categories": 20, "world.n_leaf_per_top": 10,
                                        "world.n_brands": 5000, "candidates.trending_size": 5000})
    assert 4.5 < bench.world.build_bytes() / 2**30 < 6.0
    largest = load_scenario("default", **{"world.n_items": MAX_N_ITEMS, "world.n_users": MAX_N_USERS})
    assert largest.world.build_bytes() <= MAX_WORLD_GIB * 2**30


# Actions through the environments: each refused with the mapper's message, nothing served.
ENV_ACTIONS = [
    ("fusionsim/Fusion-v0", "weights", np.array([np.nan, 0.0]),
     "weights actions must be finite numbers (values outside [-1, 1] are clipped); got nan at row 0, arm 0"),
    ("fusionsim/Fusion-v0", "weights", np.array([0.0, -np.inf]),
     "weights actions must be finite numbers (values outside [-1, 1] are clipped); got -inf at row 0, arm 1"),
    ("fusionsim/FusionSession-v0", "weights", np.array([0.5, np.nan], dtype=np.float32),
     "weights actions must be finite numbers (values outside [-1, 1] are clipped); got nan at row 0, arm 1"),
    ("fusionsim/Fusion-v0", "simplex", np.zeros(2), "simplex actions must be finite float32 numbers >= 0 with a "
                                                    "positive sum in each row; got a row summing to 0.0 at row 0"),
    ("fusionsim/Fusion-v0", "simplex", np.array([1.0, -0.5]),
     "simplex actions must be finite float32 numbers >= 0 with a positive sum in each row; got -0.5 at row 0, arm 1"),
    ("fusionsim/Fusion-v0", "arm", 1.7, "arm actions must be integers in [0, 2); got dtype float64 (1.7 at row 0)"),
    ("fusionsim/Fusion-v0", "arm", True, "arm actions must be integers in [0, 2); got dtype bool (True at row 0)"),
    ("fusionsim/Fusion-v0", "arm", "0", "arm actions must be integers in [0, 2); got dtype <U1 ('0' at row 0)"),
    ("fusionsim/Fusion-v0", "arm", -1, "arm actions must be integers in [0, 2); got -1 at row 0"),
    ("fusionsim/Fusion-v0", "arm", np.int64(2), "arm actions must be integers in [0, 2); got 2 at row 0"),
    ("fusionsim/Fusion-v0", "grid", 5, "grid actions must be integers in [0, 5); got 5 at row 0"),
]


@pytest.mark.parametrize("env_id, mode, action, message", ENV_ACTIONS,
                         ids=[f"{e.split('/')[1]}-{m}-{i}" for i, (e, m, _, _) in enumerate(ENV_ACTIONS)])
def test_envs_refuse_bad_actions(small, env_id, mode, action, message):
    env = gym.make(env_id, scenario=small, action_mode=mode)
    env.reset(seed=0)
    with pytest.raises(ValueError) as err:
        env.step(action)
    assert str(err.value) == message
    assert env.unwrapped.sim.requests_served == 0  # nothing was served
    env.close()


def test_sb3_vec_env_refuses_a_nan_row(small):
    env = FusionVecEnv(small, n_envs=3, seed=0)
    env.reset()
    actions = np.zeros((3, 2), dtype=np.float32)
    actions[2, 0] = np.nan
    with pytest.raises(ValueError) as err:
        env.step(actions)
    assert str(err.value) == ("weights actions must be finite numbers (values outside [-1, 1] are clipped); got nan "
                              "at row 2, arm 0")
