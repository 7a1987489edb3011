"""A toy PDE slow enough to be killed in the middle of a generation (used by the engine tests).

Importing this module registers ``toy_slow``; subprocesses import it before calling the CLI, and
spawned workers import it when they unpickle the PDE.
"""
from __future__ import annotations

import os
import time

from pde_lab.pdes import PDES
from tests.toy_pdes import Decay

# Seconds each batched solve sleeps; the kill tests measure a whole run and kill at random inside it.
SOLVE_DELAY = float(os.environ.get("PDE_LAB_TOY_DELAY", "0.05"))


class SlowDecay(Decay):
    """:class:`~tests.toy_pdes.Decay` with a fixed pause per batched solve; same bytes as ``toy_decay``."""

    name = "toy_slow"

    def solve(self, instances, grid, device="cpu"):
        time.sleep(SOLVE_DELAY)
        return super().solve(instances, grid, device)


if SlowDecay.name not in PDES:
    PDES.register(SlowDecay.name)(SlowDecay)
