import subprocess
import sys
import textwrap

import pytest

from fusionsim.envs.scenario import ScenarioError, load_scenario, parse_scenario, scenario_names


def test_shipped_scenarios_load():
    assert scenario_names() == ["cold_start", "default", "drift", "long_horizon", "search_heavy"]
    for name in scenario_names():
        scenario = load_scenario(name)
        assert scenario.name == name
        assert scenario.context_block + scenario.shopper_block + scenario.trending_block + scenario.random_block \
            == scenario.candidates.n_candidates


def test_overrides_apply():
    scenario = load_scenario("default", **{"world.n_users": 77, "reward": "revenue"})
    assert scenario.world.n_users == 77 and scenario.reward == "revenue"


BAD = [
    ({"world": {"n_items": -5}}, "scenario 't.yaml': world.n_items = -5 is not allowed: must be >= 1"),
    ({"world": {"n_users": 2.5}}, "scenario 't.yaml': world.n_users = 2.5 is not allowed: must be an integer"),
    ({"world": {"n_items": "many"}},
     "scenario 't.yaml': world.n_items = 'many' is not allowed: must be an integer"),
    ({"behaviour": {"examination_first": 1.5}},
     "scenario 't.yaml': behaviour.examination_first = 1.5 is not allowed: must be <= 1.0"),
    ({"behaviour": {"cascade_abandon": -0.1}},
     "scenario 't.yaml': behaviour.cascade_abandon = -0.1 is not allowed: must be >= 0.0"),
    ({"behaviour": {"click_model": "dbn"}},
     "scenario 't.yaml': behaviour.click_model = 'dbn' is not allowed: must be one of 'pbm' or 'cascade'"),
    ({"reward": "likes"},
     "scenario 't.yaml': reward = 'likes' is not allowed: must be one of 'clicks', 'purchases' or 'revenue'"),
    ({"world": {"colour": "red"}},
     "scenario 't.yaml': unknown key 'world.colour'; allowed keys here: n_items, n_users, n_top_categories, "
     "n_leaf_per_top, n_brands, n_attribute_words, latent_dim, price_sigma, new_item_fraction, "
     "launch_horizon_days, segments"),
    ({"events": [{"day": 1.0, "kind": "new_items", "size": 3}]},
     "scenario 't.yaml': unknown key 'events.0.size'; allowed keys here: day, kind, strength, n_leaves, fraction"),
    ({"events": [{"day": -1.0, "kind": "trend_shift"}]},
     "scenario 't.yaml': events.0.day = -1.0 is not allowed: must be >= 0.0"),
    ({"traffic": {"device_shares": {"desktop": 1.0, "mobile": 0.5, "app": 0.0}}},
     "scenario 't.yaml': traffic.device_shares = {'desktop': 1.0, 'mobile': 0.5, 'app': 0.0} is not allowed: "
     "must be probabilities in [0, 1] that sum to 1"),
    ({"world": {"n_items": 1000}},
     "scenario 't.yaml': world.n_items = 1000 is not allowed: 900 items are on sale at the start (the rest launch "
     "later) and every one of the 40 leaves needs 80 for its candidate block, so at least 3200 must be on sale "
     "at the start"),
    ({"candidates": {"slate_size": 150}},
     "scenario 't.yaml': candidates.slate_size = 150 is not allowed: the context and shopper blocks hold 130 "
     "candidates and must hold at least a slate"),
    ({"world": {"segments": {"new": {"share": 1.0, "activity": 1.0, "search_share": 0.3, "price_sensitivity": 1.0,
                                     "history_purchases": 0.0, "leave_bias": -2.0}}}},
     "scenario 't.yaml': world.segments = ['new'] is not allowed: must name exactly "
     "['new', 'casual', 'loyal', 'bargain']"),
    ([1, 2], "scenario 't.yaml': top level is list, not allowed: must be a mapping"),
]


@pytest.mark.parametrize("raw, message", BAD, ids=[m.split(": ", 1)[1][:40] for _, m in BAD])
def test_bad_scenarios_fail_with_one_clear_line(raw, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, "'t.yaml'")
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_bad_yaml_file_and_unknown_name(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("world: {n_items: [1, 2\n")
    with pytest.raises(ScenarioError, match=r"^scenario 'broken.yaml': not valid YAML at line \d+$"):
        load_scenario(path)
    with pytest.raises(ScenarioError, match=r"^scenario 'nope' is unknown: use one of \['cold_start', "):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match=r"^scenario '.*missing.yaml': no such file$"):
        load_scenario(tmp_path / "missing.yaml")


def test_cli_rejects_bad_scenario_file_with_exit_code_2(tmp_path):
    path = tmp_path / "neg.yaml"
    path.write_text(textwrap.dedent("""
        name: neg
        world:
          n_users: -3
    """))
    proc = subprocess.run([sys.executable, "-m", "fusionsim.experiments.cli", "simulate", "--scenario", str(path),
                           "--requests", "10", "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "Error: scenario 'neg.yaml': world.n_users = -3 is not allowed: must be >= 1"
    assert not (tmp_path / "run" / "config.yaml").exists()
