"""Every CUDA source compiles for real GPUs, with every template instantiation the launcher uses,
without a GPU: NVRTC (the compiler CuPy uses, through ``cupy.cuda.nvrtc``) to SASS for sm_70,
sm_75, sm_80 and sm_90, and nvcc for the architectures it supports. NVRTC is stricter than g++ (no
standard headers, no INFINITY/FLT_MAX), so a kernel that only passes the emulator fails here.
A test skips only when its compiler is missing, and says so."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from minisegnet.cuda import gpu, source

FILES = [p.name for p in source.kernel_files()]
ARCHS = ["sm_70", "sm_75", "sm_80", "sm_90"]
# NVRTC 12.x warns that sm_70 is deprecated; any other message fails the test.
HARMLESS = re.compile(r"Architectures prior to .*_75' are deprecated.*")


def _nvrtc():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as error:  # ImportError, or the nvrtc library missing
        return (
            None,
            f"NVRTC unavailable ({type(error).__name__}: {error}); pip install "
            "cupy-cuda12x nvidia-cuda-nvrtc-cu12",
        )
    return nvrtc, None


def _nvcc():
    return shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if shutil.which("/usr/local/cuda/bin/nvcc") else None
    )


def test_the_package_ships_every_kernel_file():
    assert set(FILES) >= {
        "conv.cu",
        "pooling.cu",
        "interpolate.cu",
        "normalization.cu",
        "loss.cu",
        "elementwise.cu",
        "gemm.cu",
        "implicit_gemm.cu",
        "crf.cu",
    }
    for name in FILES:
        src = source.load(name)
        assert src.kernels, f"{name} declares no __global__ kernel"
        assert all(k.template_params in ((), ("T",), ("T", "I")) for k in src.kernels)


def test_syncthreads_kernels_are_detected():
    uses = {k.name: k.uses_syncthreads for f in FILES for k in source.load(f).kernels}
    assert uses["batch_norm_stats"] and uses["batch_norm_backward_reduce"] and uses["gemm_tiled"]
    assert not uses["im2col"] and not uses["max_pool2d_backward"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", FILES)
def test_compiles_with_nvrtc(name, arch):
    nvrtc, reason = _nvrtc()
    if nvrtc is None:
        if _nvcc() is None:
            pytest.skip(f"neither NVRTC nor nvcc is available: {reason}")
        pytest.skip(f"{reason}; test_compiles_with_nvcc covers this file")
    src = source.load(name)
    program = nvrtc.createProgram(src.text, name, [], [])
    try:
        for expression in sorted(src.instances):
            nvrtc.addNameExpression(program, expression)
        options = [f"--gpu-architecture={arch}", *gpu.NVRTC_OPTIONS]
        try:
            nvrtc.compileProgram(program, options)
        except Exception as error:
            pytest.fail(f"NVRTC {arch} rejected {name}:\n{nvrtc.getProgramLog(program)}\n{error}")
        log = "\n".join(
            line
            for line in nvrtc.getProgramLog(program).splitlines()
            if line.strip() and not HARMLESS.search(line)
        )
        assert not log, f"NVRTC {arch} warnings for {name}:\n{log}"
        assert len(nvrtc.getCUBIN(program)) > 0
        for expression in src.instances:  # every instantiation exists in the binary
            assert nvrtc.getLoweredName(program, expression)
    finally:
        nvrtc.destroyProgram(program)


@pytest.fixture(scope="module")
def nvcc_archs():
    nvcc = _nvcc()
    if nvcc is None:
        reason = _nvrtc()[1] or "NVRTC is available and covers every file"
        pytest.skip(f"nvcc not found on PATH or in /usr/local/cuda/bin ({reason})")
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout
    return nvcc, {a.replace("compute_", "sm_") for a in listed.split()}


@pytest.mark.parametrize("name", FILES)
def test_compiles_with_nvcc(name, nvcc_archs, tmp_path):
    """nvcc's front end (stricter in places than NVRTC's): all instantiations, for the listed
    architectures this nvcc supports (CUDA 13 dropped sm_70; NVRTC 12 still covers it)."""
    nvcc, supported = nvcc_archs
    archs = [a for a in ARCHS if a in supported]
    if not archs:
        pytest.skip(f"this nvcc supports none of {ARCHS}")
    src = source.load(name)
    # Taking each instantiation's address in host code makes nvcc compile it.
    instances = ", ".join(f"(void*)&{e}" for e in sorted(src.instances))
    unit = tmp_path / "unit.cu"
    unit.write_text(f'#include "{src.path}"\nvoid* msn_instances[] = {{{instances}}};\n')
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs]
    command = [
        nvcc,
        "-std=c++17",
        "-Werror",
        "all-warnings",
        *gencode,
        f"-I{src.path.parent}",
        "-c",
        str(unit),
        "-o",
        str(tmp_path / "unit.o"),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc {archs} rejected {name}:\n{result.stderr}"
    skipped = sorted(set(ARCHS) - set(archs))
    if skipped:
        print(f"nvcc does not support {skipped}; compiled for {archs}")


def test_implicit_gemm_register_tiles_stay_in_registers(tmp_path):
    """Register blocking works only if each thread's 4 x 4 accumulator tile is in registers: ptxas
    reports no stack frame and no spills for the implicit-GEMM kernels (float) on sm_75/80/90."""
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found on PATH or in /usr/local/cuda/bin")
    src = source.load("implicit_gemm.cu")
    instances = ", ".join(f"(void*)&{e}" for e in sorted(src.instances) if "<float>" in e)
    unit = tmp_path / "unit.cu"
    unit.write_text(f'#include "{src.path}"\nvoid* msn_instances[] = {{{instances}}};\n')
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout
    archs = [a for a in ("sm_75", "sm_80", "sm_90") if a.replace("sm_", "compute_") in listed]
    if not archs:
        pytest.skip(f"this nvcc supports none of sm_75/80/90 ({listed.split()})")
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs]
    command = [nvcc, "-std=c++17", *gencode, f"-I{src.path.parent}", "-c", str(unit), "-o",
               str(tmp_path / "unit.o"), "-Xptxas", "-v"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores", result.stderr)
    assert len(frames) == 3 * len(archs), result.stderr
    assert all(frame == ("0", "0") for frame in frames), result.stderr
