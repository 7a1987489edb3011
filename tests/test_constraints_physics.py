"""PDE residual terms for hard constraints: jets, the diffusion–sorption and Navier–Stokes terms, and
the whole layer recovering a known solution from a basis that contains it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pde_lab.constraints.hard_constraint import LMSettings, hard_constraint_solve
from pde_lab.constraints.moe import Partition
from pde_lab.constraints.physics import ConstraintResidual, as_terms, coordinate_jets, jet_names, term_residuals
from pde_lab.errors import UserError
from pde_lab.pdes import get_pde
from pde_lab.pdes.diffusion_sorption import retardation
from pde_lab.pdes.navier_stokes_2d import NavierStokes2D, taylor_green_vorticity

torch.set_num_threads(1)
f64 = torch.float64


def closed_form_basis(x):
    # Two basis functions with known derivatives: sin(2x) e^{-t}, x² t.
    return torch.stack([torch.sin(2 * x[:, 0]) * torch.exp(-x[:, 1]), x[:, 0] ** 2 * x[:, 1]], dim=-1)


def test_coordinate_jets_match_closed_form():
    x = torch.rand(7, 2, dtype=f64)
    jets = coordinate_jets(closed_form_basis, x, ("u", "u_t", "u_x", "u_xx", "u_xt"), ("x", "t"))
    s, e, xx, t = torch.sin(2 * x[:, 0]), torch.exp(-x[:, 1]), x[:, 0], x[:, 1]
    c = torch.cos(2 * x[:, 0])
    expected = torch.stack([
        torch.stack([s * e, xx**2 * t], -1),
        torch.stack([-s * e, xx**2], -1),
        torch.stack([2 * c * e, 2 * xx * t], -1),
        torch.stack([-4 * s * e, 2 * t], -1),
        torch.stack([-2 * c * e, 2 * xx], -1),
    ], dim=1)
    assert jets.shape == (7, 5, 2)
    assert torch.allclose(jets, expected, atol=1e-12)
    with pytest.raises(UserError, match="coordinate"):
        coordinate_jets(closed_form_basis, x, ("u_z",), ("x", "t"))


def test_diffusion_sorption_terms_are_the_strong_form():
    pde = get_pde("diffusion_sorption")
    params = pde.default_params()
    terms = {t.name: t for t in as_terms(pde, params)}
    assert set(terms) == {"pde", "initial", "inflow", "outflow"}
    assert terms["initial"].face == (1, 0) and terms["inflow"].face == (0, 0) and terms["outflow"].face == (0, 1)
    assert pde.pinn_domain(params) == ((0.0, 1.0), (0.0, 500.0))
    u = torch.tensor([0.05, 0.5, 1.0], dtype=f64)
    jets = {"u": u, "u_t": torch.tensor([1e-3, -2e-3, 0.0], dtype=f64),
            "u_xx": torch.tensor([0.3, 1.0, -2.0], dtype=f64), "u_x": torch.tensor([-1.0, 0.5, 2.0], dtype=f64)}
    x = torch.zeros(3, 2, dtype=f64)
    r = terms["pde"].fn(jets, x, {})
    assert torch.allclose(r, retardation(u, params) * jets["u_t"] - params["D"] * jets["u_xx"])
    assert torch.allclose(terms["outflow"].fn(jets, x, {}), u + params["D"] * jets["u_x"])
    assert torch.allclose(terms["inflow"].fn(jets, x, {}), u - 1.0)
    assert torch.allclose(terms["initial"].fn(jets, x, {"u": torch.full((3,), 0.1, dtype=f64)}), u - 0.1)


def taylor_green_frames(n, times, nu, k=1):
    xs = np.arange(n) / n
    xx, yy = np.meshgrid(xs, xs, indexing="ij")
    return torch.tensor(taylor_green_vorticity(xx, yy, np.asarray(times), nu, k), dtype=f64), xx, yy


def test_navier_stokes_grid_jets_on_taylor_green():
    n, nu = 16, 0.01
    times = np.linspace(0.0, 1.0, 11)
    w, xx, yy = taylor_green_frames(n, times, nu)
    jets = NavierStokes2D.grid_jets(w, times)
    kappa = 2 * math.pi
    assert torch.allclose(jets["w"], w, atol=1e-12)
    assert torch.allclose(jets["lap_w"], -2 * kappa**2 * w, atol=1e-9)
    # ψ = cos κx cos κy / κ · e^{-2νκ²t}: u = ψ_y, v = −ψ_x.
    decay = torch.tensor(np.exp(-2 * nu * kappa**2 * times), dtype=f64)[:, None, None]
    u = -torch.tensor(np.cos(kappa * xx) * np.sin(kappa * yy), dtype=f64) * decay
    v = torch.tensor(np.sin(kappa * xx) * np.cos(kappa * yy), dtype=f64) * decay
    assert torch.allclose(jets["vel_x"], u, atol=1e-12) and torch.allclose(jets["vel_y"], v, atol=1e-12)
    # Second-order time differences, interior and one-sided ends.
    errs = []
    for m in (11, 21, 41):
        t = np.linspace(0.0, 1.0, m)
        wm, _, _ = taylor_green_frames(n, t, nu)
        errs.append(float((NavierStokes2D.grid_jets(wm, t)["w_t"] + 2 * nu * kappa**2 * wm).abs().max()))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert min(orders) > 1.8, (errs, orders)


def test_navier_stokes_pde_term_vanishes_on_taylor_green():
    pde = NavierStokes2D()
    nu, n = 0.01, 16
    times = np.linspace(0.0, 1.0, 41)
    w, xx, yy = taylor_green_frames(n, times, nu)
    terms = as_terms(pde, {"nu": nu, "forcing_amplitude": 0.0, "t_final": 1.0})
    names = jet_names(terms)
    jets = NavierStokes2D.grid_jets(w, times)
    values = torch.stack([jets[k] for k in names], -1).reshape(-1, len(names))
    x = torch.tensor(np.stack([np.broadcast_to(xx, w.shape), np.broadcast_to(yy, w.shape)], -1).reshape(-1, 2))
    r = term_residuals(terms[0], names, values, x, {})
    # Only the O(Δt²) time difference remains (advection cancels exactly for Taylor–Green).
    assert float(r.abs().max()) < 1e-3 * float(w.abs().max())
    terms_f = as_terms(pde, {"nu": nu, "forcing_amplitude": 0.1, "t_final": 1.0})
    r_f = term_residuals(terms_f[0], names, values, x, {})
    assert float(r_f.abs().max()) > 0.1  # the forcing enters: the test can fail


def test_layer_recovers_taylor_green_from_a_basis_containing_it():
    # Basis: the Taylor–Green solution scaled by 1/2, plus two fields that solve nothing. The hard
    # constraint (PDE + initial condition ω0 = TG(0)) must pick coefficient 2 on the first basis
    # function and ~0 on the others, in every expert.
    pde = NavierStokes2D()
    nu, n = 0.01, 16
    times = np.linspace(0.0, 1.0, 21)
    w, xx, yy = taylor_green_frames(n, times, nu)
    g = torch.Generator().manual_seed(0)
    junk = torch.randn(2, 1, n, n, generator=g, dtype=f64).expand(2, len(times), n, n) * torch.tensor(
        1.0 + times, dtype=f64)[None, :, None, None]
    basis = torch.cat([0.5 * w[None], junk], dim=0)                       # (N=3, T, n, n)
    terms = as_terms(pde, {"nu": nu, "forcing_amplitude": 0.0, "t_final": 1.0})
    names = jet_names(terms)
    jets = NavierStokes2D.grid_jets(basis, times)
    J = torch.stack([jets[k] for k in names], -1).permute(1, 2, 3, 4, 0).reshape(-1, len(names), 3)
    tt, gx, gy = np.meshgrid(times, np.arange(n) / n, np.arange(n) / n, indexing="ij")
    coords = torch.tensor(np.stack([gx.ravel(), gy.ravel(), tt.ravel()], -1))
    w0 = w[0].reshape(1, -1).expand(len(times), -1).reshape(-1, 1)
    part = Partition(pde.pinn_domain({"t_final": 1.0}), (2, 2, 1))
    later, first = torch.arange(n * n, coords.shape[0]), torch.arange(n * n)
    data = []
    for term, sub, m in ((terms[0], later, 40), (terms[1], first, 16)):
        idx = sub[part.grid_indices(coords[sub], m, g)]
        data += [J[idx], coords[idx], w0[idx], torch.full(idx.shape, 1.0 / math.sqrt(m), dtype=f64)]
    omega, info = hard_constraint_solve(ConstraintResidual(terms, ("vorticity",)), data, 3,
                                        LMSettings(ridge=1e-12, tol=1e-12, max_iter=30))
    assert omega.shape == (4, 3)
    assert torch.allclose(omega[:, 0], torch.full((4,), 2.0, dtype=f64), atol=1e-6)
    assert float(omega[:, 1:].abs().max()) < 1e-4  # O(Δt²) time-difference error of the jets


def test_terms_interface_required():
    with pytest.raises(UserError, match="hard_constraint_terms"):
        as_terms(get_pde("heat_1d"), {})


@pytest.mark.parametrize("face_scope", ["own", "global"])
def test_end_to_end_gradient_through_jets_and_layer_matches_finite_differences(face_scope):
    # Diffusion-sorption terms on a tiny coordinate network, 2 experts along x: the gradient of a
    # loss of ω* with respect to network weights (through coordinate_jets and the implicit backward)
    # against central differences. Exact Hessian: the residual is nonlinear and inconsistent.
    # face_scope "global": every expert gets the whole faces (shared points, full weight), the
    # experiment's diffusion-sorption mixture; the face jets are computed once and expanded.
    from pde_lab.operators.base import build_model

    pde = get_pde("diffusion_sorption")
    params = pde.default_params() | {"t_final": 1.0, "D": 0.05}
    terms = as_terms(pde, params)
    names = jet_names(terms)
    torch.manual_seed(0)
    net = build_model("pinn_mlp", in_dim=2, out_dim=4, widths=[6])
    part = Partition(pde.pinn_domain(params), (2, 1))
    g = torch.Generator().manual_seed(1)
    pts = {}
    for t in terms:
        if t.face is None:
            pts[t.name] = (part.sample(10, g), torch.ones(2, 10, dtype=f64))
        else:
            shared = face_scope == "global"
            x = part.sample(4, g, fixed={t.face[0]: pde.pinn_domain(params)[t.face[0]][t.face[1]]}, shared=shared)
            mask = torch.ones(2, 4, dtype=f64) if shared else part.touches(*t.face).to(f64)[:, None].expand(2, 4)
            pts[t.name] = (x, mask)
    settings = LMSettings(ridge=1e-3, tol=1e-12, max_iter=100, hessian="exact")
    target = torch.randn(2, 4, dtype=f64, generator=g)

    def loss():
        data = []
        for t in terms:
            x, mask = pts[t.name]
            if t.face is not None and face_scope == "global":
                jets = coordinate_jets(net, x[0], names, pde.pinn_coordinates)[None].expand(2, -1, -1, -1)
            else:
                jets = coordinate_jets(net, x.reshape(-1, 2), names, pde.pinn_coordinates).reshape(2, -1, len(names), 4)
            # u_init = 0.5 keeps the fields away from u = 0, where the clipping in R(u) makes the
            # residual non-smooth (slow LM convergence, finite differences across a kink).
            data += [jets, x, torch.full(x.shape[:2] + (1,), 0.5, dtype=f64), mask]
        omega, info = hard_constraint_solve(ConstraintResidual(terms, ("u",)), data, 4, settings)
        assert bool(info.converged.all()), (info.grad_norm, info.cost, info.iterations)
        return (omega * target).sum()

    weight = net.net[0].weight
    loss().backward()
    grad = weight.grad.clone()
    eps = 1e-6
    for idx in [(0, 0), (3, 1), (5, 0)]:
        with torch.no_grad():
            weight[idx] += eps
            lp = loss()
            weight[idx] -= 2 * eps
            lm = loss()
            weight[idx] += eps
        fd = (lp - lm) / (2 * eps)
        assert abs(float(fd) - float(grad[idx])) <= 1e-5 * (1 + abs(float(fd))), (idx, float(fd), float(grad[idx]))


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["diffusion_sorption", "navier_stokes"])
def test_experiment_runs_end_to_end(tmp_path, problem):
    # Two training steps per method: the script's whole path (ground truth, three methods, table, plot).
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "hard_constraints" / "run.py"
    subprocess.run([sys.executable, str(script), problem, "--steps", "2", "--out", str(tmp_path)], check=True)
    res = json.loads((tmp_path / f"results_{problem}.json").read_text())
    assert set(res["methods"]) == {"moe", "global", "soft"}
    assert all(0 < m["test_rel_l2"] < 10 for m in res["methods"].values())
    assert (tmp_path / f"accuracy_{problem}.png").stat().st_size > 0


@pytest.mark.gpu
def test_layer_on_cuda_matches_cpu():
    A = torch.randn(3, 12, 4, dtype=f64)
    b = torch.randn(3, 12, dtype=f64)

    def lin(w, A, b):
        return A @ w - b
    w_cpu, _ = hard_constraint_solve(lin, (A, b), 4, LMSettings(ridge=1e-3))
    w_gpu, _ = hard_constraint_solve(lin, (A.cuda(), b.cuda()), 4, LMSettings(ridge=1e-3))
    assert torch.allclose(w_cpu, w_gpu.cpu(), atol=1e-10)


def _hard_constraints_script():
    from tests.experiment_scripts import load_experiment

    return load_experiment("hard_constraints/run.py")


def test_navier_stokes_expert_loss_takes_each_point_from_its_own_expert():
    import dataclasses

    mod = _hard_constraints_script()
    cfg = dataclasses.replace(mod.SCALES["navier_stokes"]["cpu"], resolution=16,
                              model=dict(width=4, modes=4, n_layers=1, proj_width=8))
    problem = mod.NavierStokesProblem(cfg, "cpu")
    model = problem.make_model(0)
    insts = problem.draw(np.random.default_rng(0), 2)
    partition = mod.partition_for(problem, "moe")
    K, N = partition.n_experts, cfg.n_basis
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    def loss(omega, mode):
        problem.loss_fields = mode
        with torch.no_grad():
            return float(problem.loss(model, insts, omega, partition, gen))

    shared = torch.randn(2, 1, N, dtype=torch.float64).expand(2, K, N)
    # experts that agree leave no jumps: both losses are the loss of the one field
    assert loss(shared, "expert") == pytest.approx(loss(shared, "assembled"), rel=1e-12)
    # experts that disagree: the expert loss is, point by point, the residual of the owner's own field
    omega = torch.randn(2, K, N, dtype=torch.float64)
    with torch.no_grad():
        jets = problem.all_jets(model, insts)[..., problem.names.index("w"), :]
    T, n = problem.T, problem.n
    owner = partition.assign(problem.coords).reshape(T, n, n)[1:-1]
    want = torch.zeros(2, T - 2, n, n, dtype=torch.float64)
    for k in range(K):
        field = (jets * omega[:, k, None, :]).sum(-1).reshape(2, T, n, n)
        r = problem.pde.residual({"vorticity": field}, problem.params, problem.grid, problem.times)
        want = torch.where(owner == k, r, want)
    w = (jets * omega[:, partition.assign(problem.coords)]).sum(-1).reshape(2, T, n, n)
    w0 = torch.tensor(np.stack([i.inputs["vorticity"] for i in insts]), dtype=torch.float64)
    initial = float(problem.weights["initial"] ** 2 * (w[:, 0] - w0).pow(2).mean())
    assert loss(omega, "expert") == pytest.approx(float(want.pow(2).mean()) + initial, rel=1e-10)
    assert loss(omega, "assembled") != pytest.approx(loss(omega, "expert"), rel=1e-6)  # it sees the jumps
    # a bad value fails when the problem is set up, before any ground-truth solve
    with pytest.raises(ValueError, match="loss_fields must be"):
        mod.NavierStokesProblem(dataclasses.replace(cfg, extra={**cfg.extra, "loss_fields": "blended"}), "cpu")


@pytest.mark.parametrize("bad", ["1,x", "0,100", ""])
def test_timing_refuses_bad_point_counts(bad, capsys):
    mod = _hard_constraints_script()
    with pytest.raises(SystemExit) as exit_info:
        mod.main(["timing", "--timing-points", bad])
    assert exit_info.value.code == 2
    assert f"--timing-points must be positive integers separated by commas, got {bad!r}" in capsys.readouterr().err


def test_an_unknown_device_is_a_one_line_usage_error(capsys):
    mod = _hard_constraints_script()
    with pytest.raises(SystemExit) as exit_info:
        mod.main(["timing", "--device", "gpu"])
    assert exit_info.value.code == 2
    assert "--device: unknown device 'gpu'; allowed: auto, cpu, cuda, cuda:N, mps" in capsys.readouterr().err
