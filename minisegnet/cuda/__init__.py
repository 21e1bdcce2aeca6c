"""Running CUDA C: compiled by NVRTC through CuPy on a GPU, or by g++ on the CPU (emulation)."""
