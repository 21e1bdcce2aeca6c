"""One file per op family. Each file holds the definition (a NumPy reference), the fast kernels
(Numba for the CPU, CUDA C for the GPU) and the ``Function`` that dispatches between them."""
