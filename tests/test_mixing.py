"""Level-ratio sampling and trajectory selection at a fixed count or a compute budget."""
import numpy as np
import pytest

from pde_lab.datasets.interop.builder import FileBuilder
from pde_lab.datasets.mixing import (LevelMixSampler, check_ratios, level_counts, select_by_budget,
                                     select_by_count, selection_summary)
from pde_lab.datasets.reader import FieldDataset
from pde_lab.errors import UserError


def level_file(path, level, costs, nx=8, nt=3):
    """A tiny valid file whose trajectory i holds i + 1000 * (level number) at x = 0 and costs costs[i] seconds."""
    n = len(costs)
    b = FileBuilder(path, pde="mix_toy", n=n, coords={"x": np.linspace(0, 1, nx, endpoint=False)},
                    periodic=[True], times=np.arange(nt, dtype=float), level=level)
    b.add_field("u")
    tag = {"easy": 0, "medium": 1, "hard": 2}[level]
    for i in range(n):
        b.write("u", i, np.full((nt, nx), i + 1000 * tag) + 1e-3 * np.arange(nx))
    b.set_trajectories(wall_time=np.asarray(costs, dtype=float))
    return b.close()


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(3)
    return [level_file(tmp_path / "easy.h5", "easy", rng.uniform(0.5, 1.5, 60)),
            level_file(tmp_path / "hard.h5", "hard", rng.uniform(3.0, 9.0, 40))]


def test_level_counts_are_exact_or_within_one():
    assert level_counts({"easy": 0.9, "hard": 0.1}, 100) == {"easy": 90, "hard": 10}
    assert level_counts({"a": 0.7, "b": 0.2, "c": 0.1}, 10) == {"a": 7, "b": 2, "c": 1}
    rng = np.random.default_rng(0)
    for _ in range(200):
        r = rng.dirichlet(np.ones(3))
        ratios = dict(zip("abc", r))
        n = int(rng.integers(1, 500))
        c = level_counts(ratios, n)
        assert sum(c.values()) == n
        assert all(abs(c[k] - ratios[k] * n) < 1 for k in ratios)


def test_sampler_draws_exact_ratios_every_epoch(files):
    ds = FieldDataset(files)
    sampler = LevelMixSampler.from_dataset(ds, {"easy": 0.75, "hard": 0.25}, num_samples=40, seed=1)
    levels = np.array([ds.levels[ds.sample_index(i)[0]] for i in range(len(ds))])
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        items = list(sampler)
        orders.append(items)
        assert len(items) == 40 == len(set(items))
        assert np.sum(levels[items] == "easy") == 30 and np.sum(levels[items] == "hard") == 10
    # A fixed training set: same items, new order each epoch.
    assert set(orders[0]) == set(orders[1]) and orders[0] != orders[1]
    # With resample, a fresh draw each epoch (still exact).
    fresh = LevelMixSampler.from_dataset(ds, {"easy": 0.75, "hard": 0.25}, num_samples=40, seed=1, resample=True)
    draws = [set(fresh.epoch_items(e).tolist()) for e in range(2)]
    assert draws[0] != draws[1]


def test_sampler_is_deterministic_and_seed_dependent(files):
    ds = FieldDataset(files)
    mk = lambda seed: LevelMixSampler.from_dataset(ds, {"easy": 0.5, "hard": 0.5}, num_samples=20, seed=seed)
    assert list(mk(4)) == list(mk(4))
    assert list(mk(4)) != list(mk(5))


def test_sampler_splits_an_epoch_between_ranks(files):
    ds = FieldDataset(files)
    kw = dict(ratios={"easy": 0.9, "hard": 0.1}, num_samples=30, seed=2)
    full = LevelMixSampler.from_dataset(ds, **kw).epoch_items().tolist()
    parts = [list(LevelMixSampler.from_dataset(ds, rank=r, world_size=4, **kw)) for r in range(4)]
    assert [len(p) for p in parts] == [8, 8, 8, 8]  # 30 padded to 32
    merged = [parts[r][i] for i in range(8) for r in range(4)]
    assert merged[:30] == full and merged[30:] == full[:2]


def test_sampler_default_size_and_quota_errors(files):
    ds = FieldDataset(files)
    # 60 easy, 40 hard at 0.5/0.5: at most 80 without repeats.
    assert LevelMixSampler.from_dataset(ds, {"easy": 0.5, "hard": 0.5}).num_samples == 80
    with pytest.raises(UserError, match="'hard' needs 50"):
        LevelMixSampler.from_dataset(ds, {"easy": 0.5, "hard": 0.5}, num_samples=100)
    s = LevelMixSampler.from_dataset(ds, {"easy": 0.5, "hard": 0.5}, num_samples=100, replacement=True)
    items = list(s)
    assert len(items) == 100 and len(set(items)) == 50 + 40  # all 40 hard items, 10 of them twice
    with pytest.raises(UserError, match="'hard' has ratio 0.5 but no items"):
        LevelMixSampler({"easy": range(10), "hard": []}, {"easy": 0.5, "hard": 0.5}, num_samples=4, replacement=True)


def test_default_size_is_not_cut_short_by_float_floor_division(tmp_path):
    """90 easy + 10 hard items at 0.9/0.1 allow exactly 100 samples; float ``10 // 0.1`` is 99.0."""
    s = LevelMixSampler({"easy": range(90), "hard": range(90, 100)}, {"easy": 0.9, "hard": 0.1})
    assert s.num_samples == 100 and s.counts == {"easy": 90, "hard": 10}
    files = [level_file(tmp_path / "easy.h5", "easy", np.ones(90)), level_file(tmp_path / "hard.h5", "hard", np.ones(10))]
    sel = select_by_count(files, None, {"easy": 0.9, "hard": 0.1})
    assert len(sel[0]) == 90 and len(sel[1]) == 10


@pytest.mark.parametrize("share", ["count", "compute"])
def test_a_level_with_ratio_zero_gets_nothing_even_when_free(tmp_path, share):
    """Imported files record a cost of 0; a level given ratio 0 must still contribute no trajectory."""
    files = [level_file(tmp_path / "easy.h5", "easy", np.ones(20)), level_file(tmp_path / "hard.h5", "hard", np.zeros(5))]
    sel = select_by_budget(files, 10.0, {"easy": 1.0, "hard": 0.0}, share=share)
    assert len(sel[0]) == 10 and len(sel[1]) == 0


@pytest.mark.parametrize("ratios, match", [
    ({"easy": 0.9, "extreme": 0.1}, "'extreme'.*available: easy, hard"),
    ({"easy": 0.9, "hard": 0.3}, "sum to 1, got 1.2"),
    ({"easy": 1.1, "hard": -0.1}, "'hard'.*non-negative.*-0.1"),
    ({"easy": "lots", "hard": 0.5}, "'easy' must be a number, got 'lots'"),
    ({}, "non-empty"),
])
def test_bad_ratios_are_user_errors(ratios, match):
    with pytest.raises(UserError, match=match):
        check_ratios(ratios, ["easy", "hard"])


def test_select_by_count_exact_nested_and_level_independent(files):
    sel = select_by_count(files, 20, {"easy": 0.9, "hard": 0.1}, seed=0)
    assert len(sel[0]) == 18 and len(sel[1]) == 2
    bigger = select_by_count(files, 30, {"easy": 0.9, "hard": 0.1}, seed=0)
    assert set(sel[0]) <= set(bigger[0]) and set(sel[1]) <= set(bigger[1])
    # The easy picks do not depend on whether the hard file is there.
    alone = select_by_count(files[:1], 18, {"easy": 1.0}, seed=0)
    assert np.array_equal(alone[0], sel[0])
    assert not np.array_equal(select_by_count(files, 20, {"easy": 0.9, "hard": 0.1}, seed=1)[0], sel[0])
    with pytest.raises(UserError, match="'hard' needs 45"):
        select_by_count(files, 90, {"easy": 0.5, "hard": 0.5})


@pytest.mark.parametrize("share", ["count", "compute"])
@pytest.mark.parametrize("budget", [20.0, 57.3, 80.0])
def test_budget_never_exceeded_and_nearly_used(files, share, budget):
    ratios = {"easy": 0.7, "hard": 0.3}
    sel = select_by_budget(files, budget, ratios, seed=0, share=share)
    s = selection_summary(files, sel)
    spent = s["easy"]["compute_s"] + s["hard"]["compute_s"]
    assert spent <= budget
    if share == "count":
        n = s["easy"]["n"] + s["hard"]["n"]
        assert abs(s["hard"]["n"] - 0.3 * n) < 1
        assert budget - spent < 9.0  # less than one more trajectory (the dearest costs < 9 s)
    else:
        assert s["easy"]["compute_s"] <= 0.7 * budget and s["hard"]["compute_s"] <= 0.3 * budget
        assert 0.7 * budget - s["easy"]["compute_s"] < 1.5 and 0.3 * budget - s["hard"]["compute_s"] < 9.0


def test_budget_selection_trains_a_restricted_dataset(files):
    sel = select_by_budget(files, 30.0, {"easy": 0.5, "hard": 0.5}, seed=0)
    ds = FieldDataset(files, trajectories=sel)
    assert len(ds) == sum(len(v) for v in sel.values())
    # Items come from the selected trajectories only (each holds its index, plus 2000 on hard).
    got = sorted(float(ds[i][1][0, 0, 0]) for i in range(len(ds)))
    want = sorted([float(i) for i in sel[0]] + [2000.0 + i for i in sel[1]])
    assert got == want
    stats = ds.stats()
    assert stats["y_mean"][0] == pytest.approx(np.mean(want) + 1e-3 * 3.5, rel=1e-6)  # + mean of the ramp


@pytest.mark.parametrize("share", ["count", "compute"])
def test_a_budget_equal_to_a_level_s_whole_cost_takes_all_of_it(files, share):
    """The budget of the hard-only arm is the hard level's own cost: it selects every hard trajectory,
    with a float-rounding remainder that must not count as running out."""
    every = select_by_count(files, 40, {"hard": 1.0}, seed=0)
    whole = selection_summary(files, every)["hard"]["compute_s"]
    for budget in (whole, whole * (1 + 1e-15), whole + 1e-9):
        sel = select_by_budget(files, budget, {"hard": 1.0}, seed=0, share=share)
        assert len(sel[1]) == 40


def test_budget_errors(files, tmp_path):
    with pytest.raises(UserError, match="positive number of seconds, got -1"):
        select_by_budget(files, -1)
    with pytest.raises(UserError, match="unknown budget share 'time'"):
        select_by_budget(files, 10, share="time")
    with pytest.raises(UserError, match="'hard' ran out"):
        select_by_budget(files, 10_000, {"easy": 0.5, "hard": 0.5})
    with pytest.raises(UserError, match="'hard' holds .* less than its share 270 s"):
        select_by_budget(files, 300, {"easy": 0.1, "hard": 0.9}, share="compute")
    free = level_file(tmp_path / "free.h5", "easy", [0.0, 0.0])
    with pytest.raises(UserError, match="record no generation cost"):
        select_by_budget([free], 5.0)


# ---- through the trainer --------------------------------------------------------------------------
def test_train_config_mix_keys_parse_and_fail_early():
    from pde_lab.training.config import TrainConfig

    c = TrainConfig().apply_overrides(["level_mix=easy:0.9,hard:0.1", "n_train=20"])
    assert c.level_mix == {"easy": 0.9, "hard": 0.1} and c.n_train == 20
    assert TrainConfig().apply_overrides(["level_mix=easy=0.25,hard=0.75"]).level_mix == {"easy": 0.25, "hard": 0.75}
    c = TrainConfig.from_yaml("level_mix: {easy: 0.5, hard: 0.5}\ncompute_budget: 12.5\nbudget_share: compute\n")
    assert c.compute_budget == 12.5 and c.budget_share == "compute"
    with pytest.raises(UserError, match="sum to 1"):
        TrainConfig(level_mix={"easy": 0.5, "hard": 0.4})
    with pytest.raises(UserError, match="not both"):
        TrainConfig(n_train=10, compute_budget=5.0)
    with pytest.raises(UserError, match="unknown budget_share 'time'"):
        TrainConfig(budget_share="time")
    with pytest.raises(UserError, match="'compute_budget' must be positive"):
        TrainConfig(compute_budget=-3)


def test_training_on_a_mix_records_the_selection(tmp_path):
    import json

    from pde_lab.datasets import GenerateConfig, generate
    from pde_lab.training import train
    from pde_lab.training.config import TrainConfig

    data = generate(GenerateConfig(pde="toy_decay", out=str(tmp_path / "d"), n_train=8, n_valid=2, n_test=0,
                                   batch_size=4, progress=False))
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), level_mix={"easy": 0.75, "hard": 0.25}, n_train=8,
                      epochs=1, batch_size=4, model_args=dict(width=4, modes=2, n_layers=1, proj_width=4),
                      device="cpu", progress=False)
    run = train(cfg)
    info = json.loads((run / "data.json").read_text())
    assert info["n_train"] == 8
    per_level = info["selection"]["per_level"]
    assert per_level["easy"]["n"] == 6 and per_level["hard"]["n"] == 2
    with pytest.raises(UserError, match="level 'extreme' in the mix is not in the data"):
        train(TrainConfig(**{**cfg.to_dict(), "level_mix": {"easy": 0.5, "extreme": 0.5}, "overwrite": True}))
    # From the command line, under a compute budget of half the recorded generation time.
    import h5py

    from pde_lab.cli import main

    budget = 0.0
    for level in ("easy", "hard"):
        with h5py.File(data / "train" / f"{level}.h5") as f:
            budget += 0.5 * float(f["trajectories/wall_time"][()].sum())
    assert budget > 0
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run2"), "--mix", "easy=0.5,hard=0.5",
            "--set", f"compute_budget={budget!r}", "--epochs", "1", "--device", "cpu", "--quiet",
            "--set", "model_args={width: 4, modes: 2, n_layers: 1, proj_width: 4}"]
    assert main(argv) == 0
    sel = json.loads((tmp_path / "run2" / "data.json").read_text())["selection"]["per_level"]
    assert sel["easy"]["compute_s"] + sel["hard"]["compute_s"] <= budget
    assert abs(sel["easy"]["n"] - sel["hard"]["n"]) <= 1 and sel["easy"]["n"] >= 1


def test_an_unknown_level_in_the_mix_lists_the_levels_in_generation_order(tmp_path):
    files = [level_file(tmp_path / f"{lv}.h5", lv, [1.0, 1.0]) for lv in ("easy", "medium", "hard")]
    with pytest.raises(UserError, match="'extreme' in the mix is not in the data; available: easy, medium, hard$"):
        select_by_count(files, 2, {"easy": 0.5, "extreme": 0.5})
