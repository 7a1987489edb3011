"""DeepXDE (Adam, then L-BFGS) on pde_lab's 2D Poisson PINN benchmark: an outside baseline.

The problem of ``experiments/pinn_poisson`` (Müller & Zeinhofer 2023): ``−Δu = 2π² sin(πx) sin(πy)``
on ``[0, 1]²``, ``u = 0`` on the boundary, a 2-32-1 tanh network in float64, 900 interior and 120
boundary collocation points (DeepXDE's ``uniform`` distribution: a grid inside, evenly spaced on the
boundary), Glorot initialisation (DeepXDE's default). Error: relative L2 on the 100 × 100 cell-centre
grid, as in the experiment. Time: CPU seconds of this single-threaded process for the training only.

Needs DeepXDE with the PyTorch backend (``pip install deepxde``; installed only for this benchmark).

    OMP_NUM_THREADS=1 DDE_BACKEND=pytorch python benchmarks/deepxde_poisson.py --seeds 0 1 2 \\
        --adam-steps 5000 --lbfgs-steps 5000
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("DDE_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def run(seed: int, adam_steps: int, lbfgs_steps: int, lr: float) -> dict:
    import deepxde as dde

    dde.config.set_default_float("float64")
    dde.config.set_random_seed(seed)
    torch.set_num_threads(1)
    geom = dde.geometry.Rectangle([0.0, 0.0], [1.0, 1.0])

    def pde(x, u):
        lap = dde.grad.hessian(u, x, i=0, j=0) + dde.grad.hessian(u, x, i=1, j=1)
        f = 2 * np.pi**2 * torch.sin(np.pi * x[:, 0:1]) * torch.sin(np.pi * x[:, 1:2])
        return -lap - f

    bc = dde.icbc.DirichletBC(geom, lambda x: np.zeros((len(x), 1)), lambda x, on_boundary: on_boundary)
    data = dde.data.PDE(geom, pde, bc, num_domain=900, num_boundary=120, train_distribution="uniform")
    net = dde.nn.FNN([2, 32, 1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    c = (np.arange(100) + 0.5) / 100
    X, Y = np.meshgrid(c, c, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel()], 1)
    exact = np.sin(np.pi * pts[:, 0]) * np.sin(np.pi * pts[:, 1])

    def rel_l2() -> float:
        return float(np.linalg.norm(model.predict(pts)[:, 0] - exact) / np.linalg.norm(exact))

    cpu0 = time.process_time()
    model.compile("adam", lr=lr)
    model.train(iterations=adam_steps, display_every=max(adam_steps, 1), verbose=0)
    adam_cpu = time.process_time() - cpu0
    adam_err = rel_l2()
    cpu1 = time.process_time()
    dde.optimizers.config.set_LBFGS_options(maxiter=lbfgs_steps)
    model.compile("L-BFGS")
    model.train(display_every=max(lbfgs_steps, 1), verbose=0)
    lbfgs_cpu = time.process_time() - cpu1
    return {"seed": seed, "adam_rel_l2": adam_err, "adam_cpu": adam_cpu, "rel_l2": rel_l2(),
            "lbfgs_cpu": lbfgs_cpu, "cpu": adam_cpu + lbfgs_cpu}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--adam-steps", type=int, default=5000)
    p.add_argument("--lbfgs-steps", type=int, default=5000)
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args(argv)
    rows = [run(s, a.adam_steps, a.lbfgs_steps, a.lr) for s in a.seeds]
    print("| seed | rel. L2 after Adam | Adam CPU [s] | rel. L2 after L-BFGS | L-BFGS CPU [s] | total CPU [s] |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['seed']} | {r['adam_rel_l2']:.2e} | {r['adam_cpu']:.0f} | {r['rel_l2']:.2e} | "
              f"{r['lbfgs_cpu']:.0f} | {r['cpu']:.0f} |")
    med = statistics.median(r["rel_l2"] for r in rows)
    print(f"\nmedian relative L2 after Adam + L-BFGS: {med:.2e}; median CPU "
          f"{statistics.median(r['cpu'] for r in rows):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
