"""Poisson's pointwise residual, the PINN network, collocation points, the PINN config and run directory."""
import json
import math

import numpy as np
import pytest
import torch

from pde_lab.errors import UserError
from pde_lab.operators import load_model, save_model
from pde_lab.operators.pinn import PINNMLP
from pde_lab.pdes import PDES, Instance
from pde_lab.pdes.poisson import Poisson, gradient, laplacian
from pde_lab.training.pinn import (PINNConfig, build_problem, collocation_points, evaluation_points, fit_pinn,
                                   get_pinn_pde, train_pinn)

D = torch.float64


# ---- the pointwise residual ----------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_exact_solution_has_zero_residual(dim):
    pde = Poisson(dim)
    x = torch.rand(50, dim, dtype=D, generator=torch.Generator().manual_seed(dim))
    exact = lambda y: pde.exact_solution(y)  # noqa: E731
    r = pde.pointwise_residual(exact, x)
    assert r.shape == (50,)
    # f = d π² u is about 50 in 5D: the residual is exact up to round-off of that size.
    assert float(r.abs().max()) < 1e-12 * dim * math.pi ** 2
    faces = x.clone()
    faces[:, 0] = torch.tensor([0.0, 1.0] * 25, dtype=D)
    assert float(pde.boundary_residual(exact, faces).abs().max()) < 1e-15


def test_perturbed_solution_has_the_residual_of_the_perturbation():
    """u = u* + ε sin(2πx) sin(πy): the residual is −Δ of the perturbation, 5π²ε sin(2πx) sin(πy)."""
    pde, eps = Poisson(2), 1e-3
    bump = lambda y: torch.sin(2 * math.pi * y[:, :1]) * torch.sin(math.pi * y[:, 1:2])  # noqa: E731
    perturbed = lambda y: pde.exact_solution(y) + eps * bump(y)  # noqa: E731
    x = torch.rand(40, 2, dtype=D, generator=torch.Generator().manual_seed(0))
    r = pde.pointwise_residual(perturbed, x)
    expected = 5 * math.pi ** 2 * eps * bump(x)[:, 0]
    assert torch.allclose(r, expected, atol=1e-12)
    assert float(r.abs().max()) > 1e-2
    shifted = lambda y: pde.exact_solution(y) + eps  # noqa: E731
    assert torch.allclose(pde.boundary_residual(shifted, x), torch.full((40,), eps, dtype=D))


def test_wave_number_changes_the_manufactured_problem():
    pde = Poisson(2)
    x = torch.rand(30, 2, dtype=D, generator=torch.Generator().manual_seed(1))
    k2 = {"wave_number": 2.0}
    u2 = lambda y: pde.exact_solution(y, k2)  # noqa: E731
    assert float(pde.pointwise_residual(u2, x, k2).abs().max()) < 1e-10
    assert float(pde.pointwise_residual(u2, x).abs().max()) > 1.0  # k = 2 solution, k = 1 source


@pytest.mark.parametrize("dim", [2, 5])
def test_sine_sum_solution_has_zero_residual_and_its_own_source(dim):
    """u* = Σ sin(π/2 x_i) (the 5D example of Müller & Zeinhofer 2023): f = π²/4 u*, g = u* ≠ 0."""
    pde, params = Poisson(dim, solution="sine_sum"), {"wave_number": 0.5}
    x = torch.rand(60, dim, dtype=D, generator=torch.Generator().manual_seed(dim))
    u = pde.exact_solution(x, params)
    torch.testing.assert_close(u[:, 0], torch.sin(0.5 * math.pi * x).sum(1))
    torch.testing.assert_close(pde.source(x, params), math.pi ** 2 / 4 * u[:, 0])
    exact = lambda y: pde.exact_solution(y, params)  # noqa: E731
    assert float(pde.pointwise_residual(exact, x, params).abs().max()) < 1e-12
    faces = x.clone()
    faces[:, -1] = torch.tensor([0.0, 1.0] * 30, dtype=D)
    assert float(pde.boundary_residual(exact, faces, params).abs().max()) < 1e-15
    assert float(pde.boundary_value(faces, params).abs().min()) > 0.0  # non-zero Dirichlet data
    # the product solution's source does not fit the sum solution
    assert float(Poisson(dim).pointwise_residual(exact, x, params).abs().max()) > 1.0
    with pytest.raises(UserError, match="allowed: sine_product, sine_sum"):
        Poisson(dim, solution="sine_cube")


def test_5d_boundary_points_cover_all_ten_faces_evenly():
    pde = get_pinn_pde("poisson", dim=5, solution="sine_sum")
    _, xb = collocation_points(pde.pinn_domain(), 400, 500, "sobol", np.random.default_rng(0))
    on_face = [(np.isclose(xb[:, a], s)) for a in range(5) for s in (0.0, 1.0)]
    assert [int(f.sum()) for f in on_face] == [50] * 10
    assert (np.sum(on_face, axis=0) == 1).all()  # each point on exactly one face


def test_gradient_and_laplacian_of_a_polynomial():
    """u = x0² x1 + 3 x1³ (and a second field): ∇u = (2 x0 x1, x0² + 9 x1²), Δu = 2 x1 + 18 x1."""
    fn = lambda y: torch.stack([y[:, 0] ** 2 * y[:, 1] + 3 * y[:, 1] ** 3, y[:, 0]], dim=1)  # noqa: E731
    x = torch.rand(20, 2, dtype=D, generator=torch.Generator().manual_seed(2))
    g = gradient(fn, x)
    assert torch.allclose(g, torch.stack([2 * x[:, 0] * x[:, 1], x[:, 0] ** 2 + 9 * x[:, 1] ** 2], 1))
    assert torch.allclose(laplacian(fn, x), 20 * x[:, 1])
    assert torch.allclose(gradient(fn, x, component=1), torch.tensor([1.0, 0.0], dtype=D).expand(20, 2))
    assert torch.allclose(laplacian(fn, x, component=1), torch.zeros(20, dtype=D))


def test_pointwise_residual_rejects_points_of_the_wrong_dimension():
    with pytest.raises(UserError, match=r"\(N, 3\)"):
        Poisson(3).pointwise_residual(lambda y: y[:, :1], torch.rand(4, 2, dtype=D))
    with pytest.raises(UserError, match="dim"):
        Poisson(0)
    with pytest.raises(UserError, match="dim <= 3"):
        Poisson(5).grid(8)


# ---- the dataset side -------------------------------------------------------------------------------
def test_poisson_dataset_instance_is_solved_to_round_off():
    pde = PDES.get("poisson")()
    grid = pde.grid(24)
    inst = pde.sample("medium", np.random.default_rng(0), grid)
    assert inst.inputs["f"].shape == (24, 24) and 4.0 <= inst.params["grf_tau"] <= 8.0
    out = pde.solve([inst, pde.sample("hard", np.random.default_rng(1), grid)], grid)
    assert out.fields["u"].shape == (2, 24, 24) and out.times is None
    res = pde.residual(out.fields, {}, grid)
    assert float(np.abs(res).max()) < 1e-8 * float(np.abs(out.fields["f"]).max())
    wrong = out.fields["u"] + 1e-3
    assert float(np.abs(pde.residual({"u": wrong, "f": out.fields["f"]}, {}, grid)).max()) > 1.0


def test_poisson_dataset_generates_and_validates(tmp_path):
    from pde_lab.datasets import GenerateConfig, generate, validate_path

    out = generate(GenerateConfig(pde="poisson", out=str(tmp_path / "ds"), levels=["easy"], n_train=2, n_valid=1,
                                  n_test=1, resolution=12, progress=False))
    problems = validate_path(out)
    assert len(problems) == 3 and all(errs == [] for errs in problems.values())


def test_poisson_finite_volume_solution_converges_to_the_manufactured_one():
    """With f = 2π² sin(πx) sin(πy) the scheme's error falls by about 4 per halving of h."""
    pde = Poisson(2)
    errors = []
    for n in (16, 32):
        grid = pde.grid(n)
        x = torch.as_tensor(np.stack(grid.mesh(), -1).reshape(-1, 2))
        f = pde.source(x).numpy().reshape(n, n)
        u = pde.solve([Instance(params={}, inputs={"f": f})], grid).fields["u"][0]
        errors.append(np.abs(u - pde.exact_solution(x).numpy().reshape(n, n)).max())
    assert errors[1] < errors[0] / 3.5


# ---- the network -------------------------------------------------------------------------------------
def test_pinn_mlp_shapes_dtype_and_registry():
    net = PINNMLP(in_dim=3, out_dim=2, widths=[8, 8])
    assert next(net.parameters()).dtype == torch.float64
    assert net(torch.rand(5, 3, dtype=D)).shape == (5, 2)
    assert net(torch.rand(3, dtype=D)).shape == (2,)
    assert sum(p.numel() for p in PINNMLP(2, 1, widths=[32]).parameters()) == 129  # the paper's 2-32-1
    assert PINNMLP(2, 1, width=4, depth=3).config["widths"] == [4, 4, 4]
    assert PINNMLP(dtype="float32")(torch.rand(2, 2)).dtype == torch.float32
    with pytest.raises(UserError, match=r"\(N, 2\)"):
        PINNMLP()(torch.rand(4, 3, dtype=D))
    with pytest.raises(UserError, match="activation"):
        PINNMLP(activation="relu6")
    with pytest.raises(UserError, match=r"output='laplacian' needs points \(N, 3\)"):
        net(torch.rand(3, dtype=D), output="laplacian")


@pytest.mark.parametrize("args,message", [
    (dict(widths=[8, 2.5]), "pinn_mlp widths must be a positive integer, got 2.5"),
    (dict(width=0), "pinn_mlp width must be a positive integer, got 0"),
    (dict(depth=-1), "pinn_mlp depth must be a non-negative integer, got -1"),
    (dict(fourier_features=2.5), "pinn_mlp fourier_features must be a non-negative integer, got 2.5"),
    (dict(init="normal", init_scale=-0.1), "pinn_mlp init_scale must be positive, got -0.1"),
    (dict(fourier_features=4, fourier_scale=float("inf")), "pinn_mlp fourier_scale must be positive and finite, got inf"),
    (dict(periodic=[0], periods=[float("nan")]), "pinn_mlp periods needs one positive period"),
    # a saved config holds widths; a width given on top of it used to be ignored silently
    (dict(widths=[32], width=64), r"pinn_mlp takes widths or width/depth, not both; got widths=\[32\] and width=64$"),
])
def test_pinn_mlp_refuses_bad_arguments(args, message):
    with pytest.raises(UserError, match=message):
        PINNMLP(**args)


@pytest.mark.parametrize("kwargs", [
    {}, {"activation": "sin"}, {"activation": "gelu"}, {"activation": "silu"}, {"activation": "softplus"},
    {"periodic": [1], "periods": [0.7], "periodic_harmonics": 3},
    {"fourier_features": 5, "fourier_scale": 0.5, "periodic": [0, 2]}, {"widths": [5, 6, 7], "out_dim": 2},
])
def test_forward_laplacian_matches_torch_func(kwargs):
    """PINNMLP.taylor's closed-form derivatives against the torch.func gradient and Laplacian."""
    kwargs = {"widths": [8, 8], "out_dim": 1, **kwargs}
    torch.manual_seed(0)
    net = PINNMLP(in_dim=3, **kwargs)
    x = torch.rand(20, 3, dtype=D)
    value, grad, lap = net.taylor(x)
    plain = lambda y: net(y)  # noqa: E731  (no gradient/laplacian attributes: the torch.func path)
    for c in range(kwargs["out_dim"]):
        assert torch.allclose(grad[..., c], gradient(plain, x, c), atol=1e-12, rtol=1e-10)
        assert torch.allclose(lap[:, c], laplacian(plain, x, c), atol=1e-10, rtol=1e-10)
    assert torch.allclose(value, net(x), atol=1e-14, rtol=1e-12)
    assert torch.equal(net(x, output="laplacian"), lap) and torch.equal(net(x, output="gradient"), grad)
    with pytest.raises(UserError, match="output"):
        net(x, output="hessian")


def test_periodic_embedding_makes_the_network_periodic():
    net = PINNMLP(in_dim=2, out_dim=1, widths=[16], periodic=[0], periods=[2.0], periodic_harmonics=2)
    x = torch.rand(10, 2, dtype=D)
    shifted = x + torch.tensor([2.0, 0.0], dtype=D)
    assert torch.allclose(net(x), net(shifted), atol=1e-13)
    other = x + torch.tensor([0.0, 2.0], dtype=D)
    assert not torch.allclose(net(x), net(other), atol=1e-3)
    with pytest.raises(UserError, match="periodic"):
        PINNMLP(in_dim=2, periodic=[2])


def test_pinn_mlp_checkpoint_round_trip(tmp_path):
    net = PINNMLP(in_dim=2, out_dim=1, widths=[7, 5], activation="sin", fourier_features=6, fourier_scale=2.0,
                  fourier_seed=3, periodic=[1], init="xavier")
    path = tmp_path / "pinn.pt"
    save_model(net, path)
    back = load_model(path)
    assert isinstance(back, PINNMLP) and back.config == net.config
    x = torch.rand(9, 2, dtype=D)
    assert torch.equal(back(x), net(x))
    assert torch.equal(back.fourier_matrix, net.fourier_matrix)


# ---- collocation points and the run --------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["grid", "uniform", "sobol"])
def test_collocation_points_fill_the_box_and_its_faces(sampler):
    bounds = ((0.0, 1.0), (-1.0, 2.0))
    xi, xb = collocation_points(bounds, 100, 40, sampler, np.random.default_rng(0))
    assert xi.shape == (100, 2) and xb.shape == (40, 2)
    assert (xi[:, 0] > 0).all() and (xi[:, 0] < 1).all() and (xi[:, 1] > -1).all() and (xi[:, 1] < 2).all()
    on = np.isclose(xb[:, 0], 0) | np.isclose(xb[:, 0], 1) | np.isclose(xb[:, 1], -1) | np.isclose(xb[:, 1], 2)
    assert on.all()
    assert [int(np.isclose(xb[:, 0], 0).sum()), int(np.isclose(xb[:, 1], 2).sum())] == [10, 10]
    again = collocation_points(bounds, 100, 40, sampler, np.random.default_rng(0))
    assert np.array_equal(xi, again[0]) and np.array_equal(xb, again[1])


def test_grid_points_match_the_paper_set_up_and_test_points_switch_to_sobol_in_5d():
    xi, xb = collocation_points(((0.0, 1.0),) * 2, 900, 120, "grid", np.random.default_rng(0))
    assert xi.shape == (900, 2) and xb.shape == (120, 2)
    assert evaluation_points(((0.0, 1.0),) * 2, 10000, 0).shape == (10000, 2)
    pts = evaluation_points(((0.0, 1.0),) * 5, 300, 0)
    assert pts.shape == (300, 5) and len(np.unique(pts[:, 0])) == 300


def test_pinn_config_overrides_and_errors():
    cfg = PINNConfig().apply_overrides(["optimizer=lm", "model_args.widths=[16,16]", "steps=7",
                                        "pde_args.dim=3", "params.wave_number=2"])
    assert cfg.optimizer == "lm" and cfg.model_args == {"widths": [16, 16]} and cfg.steps == 7
    assert cfg.pde_args == {"dim": 3} and cfg.params == {"wave_number": 2}
    assert PINNConfig.from_yaml(cfg.to_yaml()) == cfg
    with pytest.raises(UserError, match="allowed: .*engd"):
        PINNConfig(optimizer="sgd")
    with pytest.raises(UserError, match="did you mean 'steps'"):
        PINNConfig().apply_overrides(["stpes=3"])
    with pytest.raises(UserError, match="adam_steps"):
        PINNConfig(optimizer="adam+lbfgs")
    with pytest.raises(UserError, match="no pointwise residual"):
        get_pinn_pde("darcy")
    with pytest.raises(UserError, match="no parameter 'nu'"):
        build_problem(PINNConfig(params={"nu": 1.0}))
    with pytest.raises(UserError, match="in_dim"):
        build_problem(PINNConfig(model_args={"in_dim": 3}))
    with pytest.raises(UserError, match="'seed' must be non-negative"):
        PINNConfig(seed=-1)
    with pytest.raises(UserError, match="'lr_decay' must be positive"):
        PINNConfig(lr_decay=0)
    with pytest.raises(UserError, match=r"model 'pinn_mlp' has no argument 'widht' \(did you mean 'width'\?\)"):
        PINNConfig().apply_overrides(["model_args.widht=8"])


def test_build_problem_in_5d():
    cfg = PINNConfig(pde_args={"dim": 5}, n_interior=64, n_boundary=20, sampler="sobol", eval_points=100,
                     model_args={"widths": [8]})
    prob = build_problem(cfg)
    assert prob.model.config["in_dim"] == 5 and prob.x_interior.shape == (64, 5)
    assert prob.x_boundary.shape == (20, 5) and prob.u_test.shape == (100, 1)
    r, J = prob.residual.jacobian()
    assert r.shape == (84,) and J.shape == (84, prob.residual.numel)


@pytest.mark.parametrize("optimizer,extra", [("adam", {}), ("adam+lbfgs", {"adam_steps": 5}), ("lm", {})])
def test_train_pinn_writes_a_complete_run_directory(tmp_path, optimizer, extra):
    out = tmp_path / "run"
    cfg = PINNConfig(optimizer=optimizer, steps=6, eval_every=3, n_interior=25, n_boundary=8, eval_points=100,
                     model_args={"widths": [6]}, out=str(out), progress=False, **extra)
    run_dir = train_pinn(cfg)
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "log.csv", "metrics.json", "model.pt"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["optimizer"] == optimizer and metrics["n_interior"] == 25 and metrics["n_boundary"] == 8
    assert math.isfinite(metrics["rel_l2"]) and metrics["steps"] > 0
    resolved = PINNConfig.from_yaml(run_dir / "config.yaml")
    assert resolved.model_args["in_dim"] == 2 and resolved.model_args["dtype"] == "float64"
    model = load_model(run_dir / "model.pt")
    prob = build_problem(resolved)
    prob.model.load_state_dict(model.state_dict())
    assert prob.relative_l2() == pytest.approx(metrics["rel_l2"], rel=1e-12)
    rows = (run_dir / "log.csv").read_text().splitlines()
    assert rows[0] == "step,phase,loss,rel_l2,seconds,step_size" and len(rows) >= 3
    with pytest.raises(UserError, match="not empty"):
        train_pinn(cfg)
    # A config that cannot build its problem fails before the run directory is touched: overwrite=true
    # does not delete the finished run first.
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(UserError, match="widths must be a positive integer"):
        train_pinn(PINNConfig(**{**cfg.to_dict(), "model_args": {"widths": [0]}, "overwrite": True}))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


@pytest.mark.parametrize("optimizer,args,message", [
    ("engd", {"solvr": "lstsq"}, r"optimizer 'engd' takes no optimizer_args key 'solvr' \(did you mean 'solver'\?\); "
                                 r"allowed: accept_worse, adaptive_damping, .*solver"),
    ("engd", {"solver": "qr"}, r"unknown ENGD solver 'qr'; allowed: "),
    ("engd", {"damping": "big"}, r"optimizer 'engd' rejects optimizer_args \{'damping': 'big'\}: "),
    ("spring", {"momentum": 1.5}, r"SPRING momentum must be in \[0, 1\), got 1.5"),
    ("lm", {"scaling": "diag"}, r"unknown LM scaling 'diag'; allowed: identity, marquardt"),
    ("kfac", {"ema": 2}, r"KFAC needs 0 <= ema < 1"),
    ("lbfgs", {"history_size": "many"}, r"optimizer 'lbfgs' rejects optimizer_args \{'history_size': 'many'\}"),
    ("adam+lbfgs", {"histroy_size": 5}, r"optimizer 'lbfgs' takes no optimizer_args key 'histroy_size' "
                                        r"\(did you mean 'history_size'\?\); allowed: .*history_size"),
    ("adam", {"betaz": [0.9, 0.99]}, r"optimizer 'adam' rejects arguments \['betaz'\] \(did you mean 'betas'\?\); it takes: .*betas"),
    ("adam", {"betas": [1.5, 0.99]}, r"optimizer 'adam' rejects arguments \{.*'betas': \[1.5, 0.99\]\}: "
                                     r"Invalid beta parameter at index 0: 1.5"),
    ("adam", {"lr": 0.1}, r"optimizer_args.lr: .* set lr=0.1 instead"),
    ("multiadam", {"eps": -1.0}, r"MultiAdam needs a finite lr > 0, a finite eps >= 0 .*eps=-1.0"),
    ("multiadam", {"n_terms": 3}, r"optimizer 'multiadam' takes no optimizer_args key 'n_terms': the training loop "
                                  r"sets it \(n_terms=2\); allowed: betas, eps$"),
    ("config", {"betas": [1.5, 0.99]}, r"optimizer 'config' rejects optimizer_args \{'betas': \[1.5, 0.99\]\}: .*beta"),
    ("config", {"momentum": 0.9}, r"optimizer 'config' takes no optimizer_args key 'momentum'; "
                                  r"allowed: .*amsgrad, betas"),
])
def test_bad_optimizer_args_fail_before_the_run_directory_is_touched(tmp_path, optimizer, args, message):
    """optimizer_args are checked by building the optimizer before anything is written: a bad key is
    named with the allowed ones, a bad value with the optimizer's own complaint; no run directory is
    made, and overwrite=true does not empty the previous run first."""
    extra = {"adam_steps": 1} if optimizer == "adam+lbfgs" else {}
    cfg = PINNConfig(optimizer=optimizer, optimizer_args=args, steps=2, eval_every=1, n_interior=16, n_boundary=8,
                     eval_points=16, model_args={"widths": [4]}, out=str(tmp_path / "run"), progress=False, **extra)
    with pytest.raises(UserError, match=message):
        train_pinn(cfg)
    assert not (tmp_path / "run").exists()
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "config.yaml").write_text("pde: poisson\n")
    (previous / "metrics.json").write_text("{}\n")
    with pytest.raises(UserError, match=message):
        train_pinn(PINNConfig(**{**cfg.to_dict(), "out": str(previous), "overwrite": True}))
    assert sorted(p.name for p in previous.iterdir()) == ["config.yaml", "metrics.json"]
    assert (previous / "config.yaml").read_text() == "pde: poisson\n"


def test_cli_refuses_bad_pinn_optimizer_args_without_writing(tmp_path, capsys):
    from pde_lab.cli import main

    out = tmp_path / "run"
    code = main(["train", "--pde", "poisson", "--optimizer", "engd", "--steps", "2", "--out", str(out),
                 "--set", "optimizer_args.solvr=lstsq", "--set", "progress=false"])
    assert code != 0 and not out.exists()
    assert "takes no optimizer_args key 'solvr' (did you mean 'solver'?)" in capsys.readouterr().err
    # An existing run: the advice names --overwrite only, since PINN runs cannot be resumed.
    assert main(["train", "--pde", "poisson", "--steps", "1", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", "--pde", "poisson", "--steps", "1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not empty; pick another out, or replace it (--overwrite, overwrite=true)" in err and "resume" not in err


@pytest.mark.parametrize("clock", ["wall", "process"])
def test_time_limit_stops_the_run_on_the_chosen_clock(clock):
    cfg = PINNConfig(optimizer="adam", steps=10 ** 7, eval_every=5, time_limit_minutes=0.002, clock=clock,
                     n_interior=16, n_boundary=8, eval_points=64, model_args={"widths": [4]}, progress=False)
    out = fit_pinn(build_problem(cfg), cfg)
    m = out["metrics"]
    assert m["stop_reason"] == "time limit" and m["clock"] == clock and 0 < m["steps"] < 10 ** 7
    assert m["seconds"] == m[f"{clock}_seconds"]
    assert m["seconds"] >= 0.12 and out["log"][-1]["seconds"] == pytest.approx(m["seconds"], abs=0.05)


@pytest.mark.parametrize("optimizer", ["adam", "engd"])
def test_time_limit_is_checked_after_every_step_not_only_at_evaluations(optimizer):
    # eval_every far beyond the budget: the run must still stop at the limit, with a last log row
    cfg = PINNConfig(optimizer=optimizer, steps=10 ** 6, eval_every=10 ** 6, time_limit_minutes=0.003,
                     n_interior=16, n_boundary=8, eval_points=64, model_args={"widths": [4]}, progress=False)
    out = fit_pinn(build_problem(cfg), cfg)
    m = out["metrics"]
    assert m["stop_reason"] == "time limit" and 0 < m["steps"] < 10 ** 6
    assert out["log"][-1]["step"] == m["steps"] and m["seconds"] >= 0.18


def test_hard_boundary_imposes_the_data_exactly_and_trains():
    from pde_lab.training.pinn import HardBoundary

    cfg = PINNConfig(hard_bc=True, params={"wave_number": 2.0}, optimizer="engd",
                     optimizer_args={"solver": "lstsq", "adaptive_damping": True, "line_search": "descending"},
                     steps=40, eval_every=20, n_interior=144, n_boundary=40, eval_points=400,
                     model_args={"widths": [16]}, progress=False)
    prob = build_problem(cfg)
    assert isinstance(prob.field, HardBoundary) and len(prob.x_boundary) == 0
    assert [t.name for t in prob.residual.terms] == ["interior"]
    # on every face the field is the data, whatever the network
    t = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for axis in (0, 1):
        for side in (0.0, 1.0):
            x = torch.stack([t, t], 1)
            x[:, axis] = side
            g = prob.pde.boundary_value(x, prob.params)
            torch.testing.assert_close(prob.field(x)[:, 0].detach(), g, atol=1e-15, rtol=0)
    before = prob.relative_l2()
    out = fit_pinn(prob, cfg)
    assert out["metrics"]["rel_l2"] < 1e-3 < before


def test_residual_adaptive_resampling_gathers_points_where_the_residual_is_large():
    from pde_lab.training.pinn import resample_interior

    cfg = PINNConfig(sampler="uniform", n_interior=400, n_boundary=40, eval_points=100, model_args={"widths": [4]},
                     progress=False)
    prob = build_problem(cfg)
    class Bumped(torch.nn.Module):
        """The exact solution plus a bump in the corner x, y > 0.75: the residual lives there only."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            bump = (torch.relu(x[:, :1] - 0.75) * torch.relu(x[:, 1:] - 0.75)) ** 3
            return prob.pde.exact_solution(x, prob.params) + bump + 0.0 * self.net(x)

    prob.field = Bumped(prob.model)
    before = float(((prob.x_interior > 0.75).all(dim=1)).double().mean())
    resample_interior(prob, np.random.default_rng(0))
    after = float(((prob.x_interior > 0.75).all(dim=1)).double().mean())
    assert len(prob.x_interior) == 400 and [t.name for t in prob.residual.terms] == ["interior", "boundary"]
    # RAD with k = c = 1: the corner, 1/16 of the box, holds half the sampling weight (its residual
    # sums to the mean's N, the "+ c" floor to N/16 more), less where the cubic bump is still small
    # (measured: 5.5% of the uniform points, 28.5% after resampling)
    assert before < 0.1 and after > 0.2, (before, after)
    assert prob.residual.terms[0].points is prob.x_interior


def test_training_with_resampling_runs_and_learns():
    cfg = PINNConfig(resample_every=10, optimizer="engd", sampler="uniform",
                     optimizer_args={"solver": "lstsq", "adaptive_damping": True, "line_search": "descending"},
                     steps=30, eval_every=10, n_interior=100, n_boundary=40, eval_points=400,
                     model_args={"widths": [12]}, progress=False)
    prob = build_problem(cfg)
    first = prob.x_interior.clone()
    out = fit_pinn(prob, cfg)
    assert not torch.equal(first, prob.x_interior)
    assert out["metrics"]["rel_l2"] < 0.2 * out["log"][0]["rel_l2"]
    with pytest.raises(UserError, match="resample_every"):
        PINNConfig(resample_every=-1)


@pytest.mark.parametrize("name", ["heat_1d", "heat_2d"])
def test_space_time_heat_residuals_vanish_on_the_exact_solution_only(name):
    pde = PDES.get(name)()
    params = {**pde.default_params(), "kappa": 0.05}
    x = torch.rand(40, pde.dim + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = lambda p: pde.exact_solution(p, params)  # noqa: E731
    assert float(pde.pointwise_residual(exact, x, params).abs().max()) < 1e-12
    x0 = x.clone()
    x0[:, -1] = 0.0
    assert float(pde.boundary_residual(exact, x0, params).abs().max()) < 1e-15
    # a wrong diffusivity leaves the residual (κ' − κ) Δu
    wrong = {**params, "kappa": 0.06}
    r = pde.pointwise_residual(exact, x, wrong)
    lap = -4.0 * math.pi**2 * pde.dim * exact(x)[:, 0]
    torch.testing.assert_close(r, -(0.06 - 0.05) * lap, rtol=1e-9, atol=1e-12)


def test_space_time_heat_pinn_gets_a_periodic_network_and_trains():
    cfg = PINNConfig(pde="heat_1d", params={"kappa": 0.01}, optimizer="engd", sampler="sobol",
                     optimizer_args={"solver": "lstsq", "adaptive_damping": True, "line_search": "descending"},
                     steps=80, eval_every=40, n_interior=300, n_boundary=60, eval_points=400,
                     model_args={"widths": [16]}, progress=False)
    prob = build_problem(cfg)
    assert prob.model.config["periodic"] == [0] and bool((prob.x_boundary[:, 1] == 0).all())
    out = fit_pinn(prob, cfg)
    assert out["metrics"]["rel_l2"] < 1e-3, out["metrics"]


def test_space_time_burgers_reference_is_the_cole_hopf_solution_and_zeroes_the_residual():
    from pde_lab.pdes.burgers import PINN_COLE_HOPF, cole_hopf_solution

    pde = PDES.get("burgers")()
    params = {**pde.default_params(), "nu": 0.05}
    x = torch.rand(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    u = pde.exact_solution(x, params)[:, 0]
    ref = [cole_hopf_solution(np.array([xi]), ti, 0.05, **PINN_COLE_HOPF)[0] for xi, ti in x.tolist()]
    np.testing.assert_allclose(u.numpy(), ref, rtol=1e-12, atol=1e-14)
    exact = lambda p: pde.exact_solution(p, params)  # noqa: E731
    assert float(pde.pointwise_residual(exact, x, params).abs().max()) < 1e-10
    assert float(pde.pointwise_residual(exact, x, {**params, "nu": 0.06}).abs().max()) > 1e-3


def test_space_time_burgers_pinn_trains():
    cfg = PINNConfig(pde="burgers", params={"nu": 0.05, "t_final": 0.5}, optimizer="engd", sampler="sobol",
                     optimizer_args={"solver": "lstsq", "adaptive_damping": True, "line_search": "descending"},
                     steps=60, eval_every=30, n_interior=300, n_boundary=60, eval_points=400,
                     model_args={"widths": [16, 16]}, progress=False)
    out = fit_pinn(build_problem(cfg), cfg)
    assert out["metrics"]["rel_l2"] < 2e-2, out["metrics"]


# ---- Allen–Cahn: a space-time PINN without a closed form, measured against the spectral solver ---------
@pytest.fixture(scope="module")
def allen_cahn_reference():
    pde = PDES.get("allen_cahn_1d")()
    params = {**pde.default_params(), "nu": 1e-3, "t_final": 2.0}
    return pde, params, pde.spectral_reference(params)


def test_allen_cahn_spectral_reference_solves_the_pde_and_starts_from_the_initial_state(allen_cahn_reference):
    pde, params, ref = allen_cahn_reference
    x = torch.as_tensor(collocation_points(pde.pinn_domain(params), 400, 0, "sobol", np.random.default_rng(0))[0])
    r = pde.pointwise_residual(ref, x, params)
    assert float(r.abs().max()) < 1e-5, float(r.abs().max())
    # the wrong diffusivity leaves (ν' − ν) u_xx, large at the fronts
    assert float(pde.pointwise_residual(ref, x, {**params, "nu": 2e-3}).abs().max()) > 1e-2
    x0 = x.clone()
    x0[:, 1] = 0.0
    torch.testing.assert_close(ref(x0)[:, 0], pde.pinn_initial_state(x0[:, :1], params), atol=1e-12, rtol=0)
    assert float(pde.boundary_residual(ref, x0, params).abs().max()) < 1e-12
    assert pde.reference_solution(x, params) is not None and pde.spectral_reference(params) is ref  # cached


def test_allen_cahn_spectral_reference_agrees_with_one_direct_solve(allen_cahn_reference):
    """The chained windows and the time interpolation reproduce a single solve over [0, T] at its snapshots."""
    pde, params, ref = allen_cahn_reference
    grid = pde.grid(256)
    x = torch.from_numpy(grid.axis(0))[:, None]
    u0 = pde.pinn_initial_state(x, params).numpy()
    direct = pde.solve([Instance(params=dict(params), inputs={"u": u0})], grid)
    for k in (3, 7, 10):
        t = torch.full_like(x, float(direct.times[k]))
        np.testing.assert_allclose(ref(torch.cat([x, t], 1))[:, 0].numpy(), direct.fields["u"][0, k], atol=1e-8)
    # half-way between snapshots, against a coarser reference in space and time
    coarse = PDES.get("allen_cahn_1d")()
    coarse.pinn_reference_resolution, coarse.pinn_reference_intervals = 128, 100
    pts = torch.rand(500, 2, dtype=D, generator=torch.Generator().manual_seed(3)) * torch.tensor([1.0, 2.0], dtype=D)
    diff = ref(pts) - coarse.spectral_reference(params)(pts)
    assert float(diff.norm() / ref(pts).norm()) < 1e-7


def test_allen_cahn_pinn_is_evaluated_against_the_solver_and_trains():
    cfg = PINNConfig(pde="allen_cahn_1d", params={"nu": 5e-3, "t_final": 1.0}, optimizer="engd", sampler="sobol",
                     optimizer_args={"solver": "lstsq", "adaptive_damping": True, "line_search": "descending"},
                     steps=40, eval_every=20, n_interior=300, n_boundary=60, eval_points=400,
                     model_args={"widths": [16]}, progress=False)
    prob = build_problem(cfg)
    assert prob.model.config["periodic"] == [0] and bool((prob.x_boundary[:, 1] == 0).all())
    torch.testing.assert_close(prob.u_test, prob.pde.spectral_reference(prob.params)(prob.x_test))
    out = fit_pinn(prob, cfg)
    assert out["metrics"]["rel_l2"] < 0.1 * out["log"][0]["rel_l2"], out["metrics"]
    assert out["metrics"]["rel_l2"] < 3e-2, out["metrics"]


def test_allen_cahn_hard_initial_condition_uses_the_initial_state():
    cfg = PINNConfig(pde="allen_cahn_1d", params={"nu": 5e-3, "t_final": 1.0}, hard_bc=True, sampler="sobol",
                     n_interior=50, eval_points=100, model_args={"widths": [4]}, progress=False)
    prob = build_problem(cfg)
    x = torch.rand(20, 2, dtype=D, generator=torch.Generator().manual_seed(4))
    x[:, 1] = 0.0
    with torch.no_grad():
        torch.testing.assert_close(prob.field(x)[:, 0], prob.pde.pinn_initial_state(x[:, :1]), atol=1e-14, rtol=0)


def test_cli_trains_an_allen_cahn_pinn_with_engd(tmp_path, capsys):
    from pde_lab.cli import main

    out = tmp_path / "ac"
    code = main(["train", "--pde", "allen_cahn_1d", "--model", "pinn_mlp", "--optimizer", "engd", "--steps", "3",
                 "--out", str(out), "--set", "params.t_final=1.0", "--set", "n_interior=64",
                 "--set", "n_boundary=16", "--set", "eval_points=100", "--set", "eval_every=1",
                 "--set", "model_args.widths=[8]", "--set", "progress=false"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pde"] == "allen_cahn_1d" and metrics["steps"] == 3 and math.isfinite(metrics["rel_l2"])


def test_every_pinn_experiment_config_resolves():
    """Each optimizer entry of the PINN experiments' YAML files is a valid configuration (no typo'd keys)."""
    from pathlib import Path

    import yaml

    paths = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("pinn_*/*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        spec = yaml.safe_load(path.read_text())
        for name, entry in spec["optimizers"].items():
            config = PINNConfig.from_dict({**spec["base"], **entry, "seed": 0, "out": "unused"})
            assert config.optimizer == entry["optimizer"], (path.name, name)
