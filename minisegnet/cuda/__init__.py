"""Running CUDA C: compiled by NVRTC through CuPy on a GPU, or by g++ on the CPU (emulation).

kernels/*.cu        the CUDA C kernels (package data), one file per op family, plus
                    kernels/common.cuh (helpers that compile under NVRTC, nvcc and g++)
conv.py, pooling.py, interpolate.py, normalization.py, loss.py, elementwise.py, gemm.py
                    the Python wrappers: the kernel contract's functions, each naming the
                    kernels it launches; written once for both backends
implicit_gemm.py    convolution without the column matrix (issue 15): forward, data and
                    weight gradient as tiled, register-blocked GEMMs that gather the im2col
                    tiles straight into shared memory (ops.conv.CUDA_IMPLICIT_GEMM; the
                    im2col + cuBLAS path of conv.py stays as the reference and fallback)
launch.py           launch(source_file, kernel_name, grid, block, args, shared_mem) and xp():
                    checks the arguments against the kernel's C signature, then runs it on
                    the GPU (CuPy arrays) or the CPU emulator (NumPy arrays)
source.py           reads the .cu files: kernel signatures, template instantiations
gpu.py              the cuda backend's launcher (cupy.RawModule, compiled once per process)
emulator.py         the cuda-emu backend's launcher (g++, ctypes, a compile cache) and its
                    limits; emu/cuda_emu.h is the header that makes the .cu files C++
"""
