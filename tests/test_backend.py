"""Backend selection: names, context manager, unavailable backends, dispatch."""

from __future__ import annotations

import pytest

import minisegnet as ms
from minisegnet import backend


def test_names_and_default():
    assert backend.names() == ["numpy", "numba", "cuda", "cuda-emu"]
    assert backend.current().name == "numba"


def test_use_as_call_and_context_manager():
    with backend.use("numpy") as b:
        assert b.name == "numpy" and backend.current().name == "numpy"
    assert backend.current().name == "numba"
    backend.use("numpy")
    assert backend.current().name == "numpy"
    backend.use("numba")


def test_unknown_backend_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"expected one of \['numpy', 'numba', 'cuda', 'cuda-emu'\]"
    ):
        backend.use("opencl")


def test_unavailable_backend_says_why():
    reason = backend.get("cuda").unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA device is present: the backend is available")
    with pytest.raises(backend.BackendUnavailable, match="cannot be used here"):
        backend.use("cuda")
    assert backend.current().name == "numba"


def test_pick_dispatches_and_falls_back():
    impls = dict(numpy=lambda: "ref", cuda=lambda: "gpu")
    with backend.use("numpy"):
        assert backend.pick("op", **impls)() == "ref"
    assert backend.pick("op", **impls)() == "ref"  # numba falls back to the reference
    with backend.use("numpy"):
        with pytest.raises(NotImplementedError, match="no implementation for backend 'numpy'"):
            backend.pick("op", cuda=lambda: 1)


def test_backend_is_thread_local():
    import threading

    seen = []
    with backend.use("numpy"):
        t = threading.Thread(target=lambda: seen.append(backend.current().name))
        t.start()
        t.join()
    assert seen == ["numba"]


def test_cli_lists_backends(capsys):
    from minisegnet.cli import main

    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "cuda-emu" in out
    assert ms.__version__
