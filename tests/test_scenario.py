import textwrap

import pytest

from fusionsim.envs.scenario import ScenarioError, WorldParams, load_scenario, parse_scenario, scenario_names


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


NAN, INF = float("nan"), float("inf")
SEGMENTS_AS_DICTS = {name: segment.model_dump() for name, segment in WorldParams().segments.items()}

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
    ("name: x", "scenario 't.yaml': top level is str, not allowed: must be a mapping"),
    # every float is finite and within [-1e6, 1e6], in every model, mapping and list
    ({"behaviour": {"attraction_bias": NAN}},
     "scenario 't.yaml': behaviour.attraction_bias = nan is not allowed: must be a finite number"),
    ({"behaviour": {"purchase_bias": -INF}},
     "scenario 't.yaml': behaviour.purchase_bias = -inf is not allowed: must be a finite number"),
    ({"world": {"price_sigma": INF}},
     "scenario 't.yaml': world.price_sigma = inf is not allowed: must be a finite number"),
    ({"behaviour": {"examination_first": NAN}},
     "scenario 't.yaml': behaviour.examination_first = nan is not allowed: must be a finite number"),
    ({"behaviour": {"leave_after_purchase": INF}},
     "scenario 't.yaml': behaviour.leave_after_purchase = inf is not allowed: must be a finite number"),
    ({"traffic": {"device_shares": {"desktop": 0.3, "mobile": NAN, "app": 0.2}}},
     "scenario 't.yaml': traffic.device_shares.mobile = nan is not allowed: must be a finite number"),
    ({"world": {"segments": {**SEGMENTS_AS_DICTS, "loyal": {**SEGMENTS_AS_DICTS["loyal"], "leave_bias": NAN}}}},
     "scenario 't.yaml': world.segments.loyal.leave_bias = nan is not allowed: must be a finite number"),
    ({"events": [{"day": INF, "kind": "trend_shift"}]},
     "scenario 't.yaml': events.0.day = inf is not allowed: must be a finite number"),
    ({"events": [{"day": 1.0, "kind": "trend_shift", "strength": NAN}]},
     "scenario 't.yaml': events.0.strength = nan is not allowed: must be a finite number"),
    ({"candidates": {"context_share": NAN}},
     "scenario 't.yaml': candidates.context_share = nan is not allowed: must be a finite number"),
    ({"behaviour": {"taste_weight": 1e39}},
     "scenario 't.yaml': behaviour.taste_weight = 1e+39 is not allowed: must be in [-1e+06, 1e+06]"),
    ({"behaviour": {"attraction_bias": -2e6}},
     "scenario 't.yaml': behaviour.attraction_bias = -2000000.0 is not allowed: must be in [-1e+06, 1e+06]"),
    ({"behaviour": {"attraction_bias": "nan"}},
     "scenario 't.yaml': behaviour.attraction_bias = 'nan' is not allowed: must be a number"),
    ({"behaviour": {"attraction_bias": True}},
     "scenario 't.yaml': behaviour.attraction_bias = True is not allowed: must be a number"),
    ({"world": {"price_sigma": "5e-1"}},
     "scenario 't.yaml': world.price_sigma = '5e-1' is not allowed: must be a number (YAML reads 5e-1 as text: "
     "write 5.0e-1)"),
    ({"world": {"n_items": 10**500}},
     "scenario 't.yaml': world.n_items = <an integer of about 501 digits> is not allowed: must be <= 10,000,000; a "
     "world of 10^500 items x 20,000 shoppers with latent_dim 16 and 4.05 past purchases per shopper would take "
     "about 10^493 GiB to build"),
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
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == ("scenario 'broken.yaml': not valid YAML at line 2, column 1: while parsing a flow "
                              "sequence, expected ',' or ']', but got '<stream end>'")
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
    from click.testing import CliRunner

    from fusionsim.experiments.cli import cli

    result = CliRunner().invoke(cli, ["simulate", "--scenario", str(path), "--requests", "10", "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: scenario 'neg.yaml': world.n_users = -3 is not allowed: must be >= 1"
    assert not (tmp_path / "run" / "config.yaml").exists()
