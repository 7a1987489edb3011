"""Trains the tiny FNO of test_training on in-memory data; run directly or under torchrun by
test_distributed.py. Usage: python tests/ddp_worker.py RUN_DIR N_TRAIN BATCH_SIZE"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_training import antiderivative_data, tiny_config, tiny_model  # noqa: E402

from pde_lab.training import fit  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    out, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    train_ds, valid_ds = antiderivative_data(n, 32, seed=0), antiderivative_data(8, 32, seed=1)
    config = tiny_config(Path(out), epochs=3, batch_size=batch, lr=3e-3)
    fit(tiny_model(config, train_ds), train_ds, valid_ds, config, out)
