"""Data-parallel training under torchrun: two gloo processes give the one-process result for the same
global batch, including a last batch that leaves one rank without samples."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pde_lab.training import distributed
from pde_lab.training.distributed import Context, rank_share

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def test_rank_shares_partition_every_batch_in_order():
    for n in range(0, 11):
        batch = list(range(100, 100 + n))
        shares = [rank_share(batch, Context(r, 3)) for r in range(3)]
        assert sum(shares, []) == batch
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def _run(args, env_extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None
                    and shutil.which("torchrun") is None, reason="torchrun not installed")
@pytest.mark.parametrize("n_train,batch", [(25, 8)])
def test_two_gloo_processes_match_one_process(tmp_path, n_train, batch):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(WORKER), str(one), str(n_train), str(batch)], {})
    _run([torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER), str(two), str(n_train), str(batch)],
         {"PDE_LAB_TEST": "1"})
    a = torch.load(one / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(two / "checkpoints" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3
    for key, value in a["model"]["state_dict"].items():
        torch.testing.assert_close(b["model"]["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    for ra, rb in zip(a["history"], b["history"]):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["valid_loss"] == pytest.approx(ra["valid_loss"], rel=1e-5)
    assert sorted(p.name for p in two.iterdir()) == ["checkpoints", "config.yaml", "log.csv"]


def test_single_process_context_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.context(torch.device("cpu"))
    assert not ctx.active and ctx.is_main


def test_batchnorm_models_are_refused_under_data_parallel_training(tmp_path, monkeypatch):
    """A BatchNorm layer normalises each rank's share by that share's statistics and keeps per-rank
    running statistics: two ranks did not give the one-process steps (a tiny CNO: weights 0.025 apart
    after 2 epochs), and ranks validating different models can stop at different epochs and hang."""
    from pde_lab.errors import UserError
    from pde_lab.operators import build_model
    from pde_lab.training import fit
    from tests.test_training import antiderivative_data, tiny_config

    monkeypatch.setattr(distributed, "context", lambda device: Context(0, 2, 0))  # as under torchrun
    ds = antiderivative_data(8, 32, seed=0)
    config = tiny_config(tmp_path, model="cno", model_args=dict(width=4, levels=2, n_res=1, n_res_neck=1))
    cno = build_model("cno", in_channels=1, out_channels=1, n_dims=1, **config.model_args)
    with pytest.raises(UserError, match=r"'cno' has \d+ BatchNorm layers .*norm=none"):
        fit(cno, ds, None, config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    distributed.check_model(cno, Context())  # one process: BatchNorm is fine
    plain = build_model("cno", in_channels=1, out_channels=1, n_dims=1, norm="none", **{
        k: v for k, v in config.model_args.items() if k != "norm"})
    distributed.check_model(plain, Context(0, 2, 0))
