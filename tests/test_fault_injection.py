"""Fault injection: kill -9 at random moments, failing writes, a full file system, random bad arguments.

After every fault: nothing at the output name unless it is complete; every file that passes validation
is complete and holds the right bytes; the same command then finishes the job with fields
byte-identical to an uninterrupted run.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import tests.engine_toys  # noqa: F401  (registers toy_slow)
from pde_lab.cli import main
from pde_lab.datasets import GenerateConfig, generate, validate_file, validate_path
from pde_lab.datasets import engine
from pde_lab.datasets.lock import lock_path
from tests.test_engine import field_bytes

ROOT = Path(__file__).resolve().parents[1]
KILL_ARGS = ["generate", "--pde", "toy_slow", "--n-train", "6", "--n-valid", "2", "--n-test", "2",
             "--batch-size", "2", "--quiet"]
SCRIPT = "import sys, tests.engine_toys; from pde_lab.cli import main; sys.exit(main(sys.argv[1:]))"


def launch(out: Path, extra=()) -> subprocess.Popen:
    """Start the kill test's command; stderr goes to ``<out>.stderr`` (a pipe would stay open in any
    orphan), and every descendant carries ``PDE_LAB_TEST_MARK=<out>`` so orphans can be found."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "PDE_LAB_TEST_MARK": str(out)}
    with open(f"{out}.stderr", "wb") as err:
        return subprocess.Popen([sys.executable, "-c", SCRIPT, *KILL_ARGS, *extra, "--out", str(out)], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=err)


def marked_processes(out: Path) -> list[int]:
    """Pids of live processes started (directly or not) by :func:`launch` for ``out``."""
    mark = f"PDE_LAB_TEST_MARK={out}".encode()
    pids = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark in env.read_bytes().split(b"\0") and b"Z" not in (env.parent / "stat").read_bytes().split()[2]:
                pids.append(int(env.parent.name))
        except OSError:
            pass
    return pids


def wait_for_start(proc: subprocess.Popen, out: Path) -> None:
    """Until the run takes its lock (imports done, generation begins) or exits."""
    while not lock_path(out).exists() and proc.poll() is None:
        time.sleep(0.002)


def assert_nothing_false_complete(root: Path, reference: Path) -> None:
    """Every file under ``root`` that passes validation is complete and equals its reference file."""
    ref = field_bytes(reference)
    for path in list(root.rglob("*.h5")) + list(root.rglob("*.h5.partial")):
        if validate_file(path):
            continue
        split, level = path.parent.name, path.name.split(".")[0]
        got = field_bytes(path.parent.parent)
        for key, value in got.items():
            if key.startswith(f"{split}/{level}.h5:"):
                assert value == ref[key], f"{path} validates but differs from the uninterrupted run"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The kill test's command run to the end, and how long it ran after taking its lock."""
    out = tmp_path_factory.mktemp("kill_ref") / "d"
    proc = launch(out)
    wait_for_start(proc, out)
    t0 = time.monotonic()
    proc.wait(timeout=300)
    assert proc.returncode == 0, Path(f"{out}.stderr").read_text()
    return out, time.monotonic() - t0


def kill_trials(tmp_path, uninterrupted, n, seed, workers_every=0):
    reference, duration = uninterrupted
    rng = np.random.default_rng(seed)
    interrupted = 0
    for trial in range(n):
        out = tmp_path / f"t{trial}" / "d"
        out.parent.mkdir()
        extra = ["--workers", "2"] if workers_every and trial % workers_every == workers_every - 1 else []
        proc = launch(out, extra)
        wait_for_start(proc, out)
        time.sleep(rng.uniform(0.0, 1.1 * duration))
        proc.kill()
        proc.wait()
        Path(f"{out}.stderr").unlink()
        # Workers poll for the main process; a fork server still importing torch exits once it is up.
        deadline = time.monotonic() + 180
        while marked_processes(out) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not marked_processes(out), "worker processes outlived the killed run"
        if out.exists():  # the final name only ever holds a finished dataset
            assert all(v == [] for v in validate_path(out).values())
        assert_nothing_false_complete(out.parent, reference)
        interrupted += engine.partial_path(out).exists()
        assert main(KILL_ARGS + ["--out", str(out)]) == 0  # the same command resumes (or finds it done)
        assert field_bytes(out) == field_bytes(reference)
        assert all(v == [] for v in validate_path(out).values())
        assert sorted(p.name for p in out.parent.iterdir()) == ["d"]  # no lock, no partial, no leftovers
    return interrupted


def test_kill9_at_random_points_then_resume_three_times(tmp_path, uninterrupted):
    kill_trials(tmp_path, uninterrupted, 3, seed=1)


@pytest.mark.slow
def test_kill9_at_random_points_then_resume_twenty_times(tmp_path, uninterrupted):
    interrupted = kill_trials(tmp_path, uninterrupted, 20, seed=2, workers_every=4)
    assert interrupted >= 5, f"only {interrupted} of 20 kills landed mid-generation; the test proves little"


# ---- failing writes -------------------------------------------------------------------------------------

SMALL = dict(pde="toy_decay", n_train=4, n_valid=0, n_test=2, batch_size=2, progress=False)


def make(out, **kw):
    return generate(GenerateConfig(**{**SMALL, "out": str(out), **kw}))


class Injector:
    """Counts calls of the patched functions and raises ``OSError(ENOSPC)`` on call number ``fail_at``."""

    def __init__(self, monkeypatch, targets):
        self.calls, self.fail_at = 0, None
        for owner, name in targets:
            original = getattr(owner, name)

            def wrapped(*a, _original=original, **k):
                self.calls += 1
                if self.calls == self.fail_at:
                    raise OSError(28, "No space left on device (injected)")
                return _original(*a, **k)

            monkeypatch.setattr(owner, name, wrapped)


INJECTION_POINTS = {
    "rename": [(os, "replace"), (os, "rename")],
    "hdf5 write": [(h5py.Dataset, "__setitem__"), (h5py.Group, "create_dataset")],
    "fsync": [(os, "fsync")],
    "part write": [(np, "savez")],
}


@pytest.mark.parametrize("where", sorted(INJECTION_POINTS))
def test_a_failed_write_leaves_nothing_that_passes_as_complete(tmp_path, monkeypatch, where):
    reference = make(tmp_path / "ref")
    inj = Injector(monkeypatch, INJECTION_POINTS[where])
    make(tmp_path / "count")
    n_calls = inj.calls
    assert n_calls >= 3
    rng = np.random.default_rng(len(where))
    points = sorted(set(rng.choice(np.arange(1, n_calls + 1), size=min(n_calls, 4), replace=False).tolist()) | {n_calls})
    for k in points:
        out = tmp_path / f"k{k}" / "d"
        inj.calls, inj.fail_at = 0, k
        with pytest.raises(OSError, match="injected"):
            make(out)
        inj.fail_at = None
        assert not lock_path(out).exists(), k
        if out.exists():  # only a failure after the final rename (syncing the parent directory) gets here
            assert all(v == [] for v in validate_path(out).values())
        assert_nothing_false_complete(out.parent, reference)
        make(out)
        assert field_bytes(out) == field_bytes(reference), k
        assert sorted(p.name for p in out.parent.iterdir()) == ["d"]


def test_a_full_file_system(tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.decode().strip()}")
    try:
        out = small / "d"
        code = main(["generate", "--pde", "toy_decay", "--n-train", "300", "--n-valid", "0", "--n-test", "0",
                     "--resolution", "64", "--batch-size", "50", "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1 and "No space left on device" in err, err
        assert not out.exists() and not lock_path(out).exists()
        reference = make(tmp_path / "ref", n_train=300, n_test=0, resolution=64, batch_size=50, levels=None)
        assert_nothing_false_complete(small, reference)
    finally:
        subprocess.run(["umount", str(small)], check=True)


# ---- random bad arguments at every subcommand --------------------------------------------------------------

# One input each subcommand is known to reject before it does any work; random extras ride along.
POISONS = {
    "generate": [["--pde", "nope"], ["--n-train", "-1"], ["--shard", "5/2"], ["--workers", "0"], ["--device", "tpu"],
                 ["--resolution", "3"], ["--batch-size", "0"], ["--seed", "-4"], ["--out", "{tmp}/afile"]],
    "merge": [["{tmp}/missing"], ["{tmp}/notashard"], ["{tmp}/afile"]],
    "validate": [["{tmp}/missing.h5"], ["{tmp}/garbage.h5"], ["{tmp}/notashard"]],
    "info": [["{tmp}/missing"], ["{tmp}/garbage.h5"], ["{tmp}/notashard"]],
    "train": [["--model", "nope"], ["--data", "{tmp}/missing"], ["--config", "{tmp}/garbage.yaml"],
              ["--data", "{tmp}/notashard"], ["--pde", "nope"]],
    "evaluate": [["--run", "{tmp}/missing"], ["--run", "{tmp}/notashard"]],
    "demo": [["--out", "{tmp}/notashard"]],  # a non-empty directory: refused before anything runs
    "list": [["extra-argument"]],
}
VALUES = ["-1", "0", "abc", "nan", "inf", "", "1/0", "{tmp}/missing", "{tmp}/garbage.h5", "{tmp}/garbage.yaml",
          "{tmp}/newout", "{tmp}/afile", "x" * 300, "\u2603", "--", "-3.5e400"]
NEVER_RANDOM = {"--overwrite", "--resume", "-h", "--help"}  # flags that would replace data or print help


def _subcommands():
    from pde_lab.cli import _parser

    parser = _parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_random_bad_arguments_at_every_subcommand(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths among the random values land where the snapshot sees them
    (tmp_path / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    (tmp_path / "garbage.yaml").write_text("model: [unclosed\n  epochs: {{{\n")
    (tmp_path / "afile").write_text("a file where a directory is expected")
    (tmp_path / "notashard").mkdir()
    (tmp_path / "notashard" / "readme.txt").write_text("not a dataset, not a shard, not a run")
    before = _snapshot(tmp_path)
    subs = _subcommands()
    missing = set(subs) - set(POISONS)  # subcommands added later get argparse-level poison only
    rng = np.random.default_rng(0)
    failures: list[str] = []
    for trial in range(160):
        name = sorted(subs)[trial % len(subs)]
        options = [a for a in subs[name]._actions if a.option_strings and not set(a.option_strings) & NEVER_RANDOM]
        argv = [name]
        if name in missing:
            argv += ["--no-such-option"]
        else:
            argv += list(POISONS[name][int(rng.integers(len(POISONS[name])))])
        # Extras never repeat the poison's option: a later value would override it.
        options = [a for a in options if not set(a.option_strings) & set(argv)]
        for a in rng.permutation(options)[: int(rng.integers(0, 4))]:
            argv.append(a.option_strings[-1])
            if a.nargs != 0:
                argv.append(VALUES[int(rng.integers(len(VALUES)))])
        argv = [s.replace("{tmp}", str(tmp_path)) for s in argv]
        signal.alarm(60)  # a command that slipped through would run for minutes: fail instead
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: usage line and message, exit 2
            code = e.code
        except Exception as e:  # noqa: BLE001  (the console script would print a traceback)
            failures.append(f"{argv}: uncaught {e.__class__.__name__}: {e}")
            code = 1
        finally:
            signal.alarm(0)
        out, err = capsys.readouterr()
        if code in (0, None):
            failures.append(f"{argv}: succeeded")
        if "Traceback" in err + out:
            failures.append(f"{argv}: traceback printed")
        if _snapshot(tmp_path) != before:
            failures.append(f"{argv}: left {sorted(_snapshot(tmp_path) - before)}")
            for p in sorted(set(_snapshot(tmp_path)) - before, reverse=True):
                (tmp_path / p).unlink() if (tmp_path / p).is_file() else shutil.rmtree(tmp_path / p, ignore_errors=True)
    assert not failures, "\n".join(failures)
