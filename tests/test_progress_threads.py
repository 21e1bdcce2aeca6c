"""Progress lines when the output is not a terminal, and thread counts that never
oversubscribe the cores (minisegnet/progress.py, minisegnet/threads.py)."""

from __future__ import annotations

import pytest

from minisegnet import threads
from minisegnet.progress import ProgressLines, format_duration
from tests.camvid_fixture import camvid_train_args, make_camvid


def test_progress_lines_every_interval_with_rate_loss_and_eta():
    now = [0.0]
    out = []
    p = ProgressLines(10, "epoch 2/3", interval=30, log=out.append, clock=lambda: now[0])
    now[0] = 10
    assert p.update(1, 8, 2.0) is None  # too early
    now[0] = 40
    line = p.update(4, 32, 1.23456)
    assert line == "epoch 2/3  batch 4/10  0.8 img/s  loss 1.2346  ETA 1m00s"
    now[0] = 50
    assert p.update(5, 40) is None and out == [line]
    assert format_duration(3725) == "1h02m05s" and format_duration(7.4) == "7s"


def test_resumed_epoch_eta_counts_only_batches_run_now():
    now = [0.0]
    p = ProgressLines(10, interval=0, log=lambda s: None, clock=lambda: now[0], start_done=6)
    now[0] = 20
    assert p.update(8, 16).endswith("ETA 20s")  # 2 batches in 20 s, 2 left


def test_trainer_prints_progress_lines_without_a_terminal(tmp_path):
    from minisegnet.train import TrainConfig, Trainer

    root = make_camvid(tmp_path / "c")
    out = []
    config = TrainConfig(data=f"camvid:{root}", size=16, epochs=1, batch_size=2)
    trainer = Trainer(config, tmp_path / "run", progress=False, log=out.append)
    trainer.progress_interval = 0
    trainer.fit()
    assert any(line.startswith("epoch 1/1  batch 1/2  ") and "img/s  loss" in line for line in out)


def test_each_pool_gets_the_cores_or_the_threads_asked_for(monkeypatch):
    """Numba and OpenBLAS take turns, so each gets every core by default, and --threads N
    gives both N (never more than the cores for BLAS)."""
    cores = threads.cpu_cores()
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    counts = threads.configure(1)
    assert counts["numba"] == 1 and counts["cores"] == cores
    if counts["blas"] is not None:  # OpenBLAS found and set
        assert counts["blas"] == 1
    try:
        counts = threads.configure()
        assert counts["numba"] <= cores
        if counts["blas"] is not None:
            assert counts["blas"] == cores
    finally:
        threads.configure()
    with pytest.raises(ValueError, match="--threads must be a positive integer"):
        threads.configure(0)


def test_threads_option(tmp_path, capsys):
    from minisegnet.cli import main

    root = make_camvid(tmp_path / "c")
    args = camvid_train_args(root)
    assert main([*args, "--threads", "1", "--no-progress", "--out", str(tmp_path / "r")]) == 0
    assert "threads: Numba 1 x BLAS" in capsys.readouterr().out
    assert main([*args, "--threads", "0", "--out", str(tmp_path / "r2")]) == 2
    assert "--threads: expected a positive integer" in capsys.readouterr().err
