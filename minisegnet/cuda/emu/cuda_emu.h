// cuda_emu.h: just enough of CUDA C++ for g++ to compile minisegnet's kernels for the CPU.
//
// The cuda-emu backend (minisegnet/cuda/emulator.py) compiles each kernels/*.cu file unchanged,
// after this header, into a shared library, and calls one generated host function per kernel
// instantiation. That function runs the whole grid on the calling CPU thread:
//
//   for each block (z, y, x):                 blockIdx = (x, y, z)
//       for each thread (z, y, x):            threadIdx = (x, y, z)
//           kernel(args...)                    one call = one CUDA thread
//
// Threads of a block run one after another, which is exact for kernels whose threads never
// wait for each other. A kernel that calls __syncthreads() (found by the emulator in the source)
// instead runs every thread of a block as a fiber (a coroutine with its own stack): each fiber
// runs until its next __syncthreads(), then
// hands control back to the scheduler here; once every thread of the block has arrived, all
// continue. That is exactly the guarantee __syncthreads() gives on a GPU.
//
// What is emulated: __global__, __device__, __host__, __forceinline__, __noinline__,
// __launch_bounds__, __restrict__ (a g++ keyword already), __shared__ (static and
// `extern __shared__` dynamic shared memory), threadIdx/blockIdx/blockDim/gridDim, warpSize,
// __syncthreads, atomicAdd (float, double, int, unsigned long long), the min/max overloads, and
// the math functions the kernels use (expf, logf, sqrtf, rsqrtf, powf, fmaxf, __expf, ...).
// What is not: warp intrinsics (__shfl_*_sync, __ballot_sync, ...: a kernel using one fails to
// compile with a message saying so), texture/surface memory, cooperative groups, streams.
//
// Shared memory: `__shared__` becomes `static`, so a `__shared__` array inside a kernel has
// static storage, shared by all fibers of a block (blocks run one after another, and the
// Python side runs one launch at a time). `extern __shared__` is the one construct a macro
// cannot carry (`extern static` is not C++), so the emulator compiles a copy of the .cu file in
// which `extern __shared__` reads `extern`, under a #line directive that keeps the real file
// name and line numbers for compiler messages and gdb. Each dynamic
// `extern __shared__ unsigned char name[];` array is then defined by the generated wrapper with
// MSN_EMU_DYNAMIC_SHARED_MAX bytes; at the start of every block the first `shared_mem` bytes are
// filled with 0xFF (NaN as float or double), so a kernel reading shared memory before writing it
// sees garbage just as on a GPU, and under AddressSanitizer the bytes past `shared_mem` are
// poisoned so reading past the size given at launch is reported.
#ifndef MINISEGNET_CUDA_EMU_H
#define MINISEGNET_CUDA_EMU_H

#include <csetjmp>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define MSN_EMU_ASAN 1
#endif

// ------------------------------------------------------------------ qualifiers and keywords
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Block-scope `__shared__ T tile[16][16];` -> `static T tile[16][16];`: static storage, so every
// fiber of the block sees the same array. (Not thread_local: g++ 12 miscompiles a block-scope
// `extern thread_local` array declaration.) See above for `extern __shared__`.
#define __shared__ static

#ifndef MSN_EMU_DYNAMIC_SHARED_MAX
#define MSN_EMU_DYNAMIC_SHARED_MAX 49152  // CUDA's default limit for dynamic shared memory
#endif

// ------------------------------------------------------------------ built-in variables
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

// One copy per loaded kernel library; the Python side runs one launch at a time (under a lock).
// In gdb: `print threadIdx`, `print blockIdx`.
static uint3 threadIdx;
static uint3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;
static const int warpSize = 32;

// ------------------------------------------------------------------ min / max overloads
// CUDA declares these in the global namespace for device code.
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
static inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

// ------------------------------------------------------------------ math intrinsics
// expf, logf, sqrtf, powf, fmaxf, floorf, ... come from <cmath> (C's global names).
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// __expf, __logf and __powf (CUDA's fast approximations) need no definition: glibc's <math.h>
// already declares functions of those names, computing the exact expf, logf and powf.
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
static inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, sizeof i); return i; }
static inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, sizeof d); return d; }
static inline long long __double_as_longlong(double d) { long long i; std::memcpy(&i, &d, sizeof i); return i; }
template <typename T> static inline T __ldg(const T* p) { return *p; }
static inline void __threadfence() {}
static inline void __threadfence_block() {}

// ------------------------------------------------------------------ atomics
// Emulated threads never run at the same time, so a plain read-modify-write is atomic here.
// (That is also why the emulator cannot show a missing atomic: see the module docstring.)
static inline float atomicAdd(float* address, float value) { float old = *address; *address = old + value; return old; }
static inline double atomicAdd(double* address, double value) { double old = *address; *address = old + value; return old; }
static inline int atomicAdd(int* address, int value) { int old = *address; *address = old + value; return old; }
static inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
    unsigned long long old = *address; *address = old + value; return old;
}
static inline int atomicMax(int* address, int value) { int old = *address; if (value > old) *address = value; return old; }
static inline int atomicCAS(int* address, int compare, int value) { int old = *address; if (old == compare) *address = value; return old; }

// ------------------------------------------------------------------ not emulated: warp intrinsics
// A kernel that uses one fails to compile here with this message (it still runs on a GPU).
template <typename... A> struct msn_emu_unsupported { static constexpr bool value = false; };
#define MSN_EMU_UNSUPPORTED(name)                                                              \
    template <typename... A> static inline int name(A...) {                                    \
        static_assert(msn_emu_unsupported<A...>::value,                                       \
                      "cuda-emu: " #name " (a warp intrinsic) is not emulated; see emulator.py"); \
        return 0;                                                                              \
    }
MSN_EMU_UNSUPPORTED(__shfl_sync)
MSN_EMU_UNSUPPORTED(__shfl_up_sync)
MSN_EMU_UNSUPPORTED(__shfl_down_sync)
MSN_EMU_UNSUPPORTED(__shfl_xor_sync)
MSN_EMU_UNSUPPORTED(__ballot_sync)
MSN_EMU_UNSUPPORTED(__any_sync)
MSN_EMU_UNSUPPORTED(__all_sync)
MSN_EMU_UNSUPPORTED(__activemask)
MSN_EMU_UNSUPPORTED(__syncwarp)
#undef MSN_EMU_UNSUPPORTED

// ------------------------------------------------------------------ switching stacks
// A fiber switch saves the registers a called function must preserve and the stack pointer,
// then loads another fiber's. On x86-64 that is the dozen instructions below (about 10 ns);
// elsewhere, or with -DMSN_EMU_UCONTEXT, glibc's swapcontext does it, portably but about 100
// times slower (it also saves the signal mask, a system call each way).
#if defined(__x86_64__) && !defined(MSN_EMU_UCONTEXT)
#define MSN_EMU_FAST_SWITCH 1
// msn_emu_switch(&save, load): push rbp, rbx, r12-r15 and the SSE/x87 control words, store the
// stack pointer in *save, switch to the stack `load` and pop that fiber's registers: the `ret`
// continues wherever that fiber last called msn_emu_switch (or at its entry function).
extern "C" void msn_emu_switch(void** save, void* load);
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".type msn_emu_switch, @function\n"
    "msn_emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $16, %rsp\n"
    "    stmxcsr 8(%rsp)\n"
    "    fnstcw 12(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    ldmxcsr 8(%rsp)\n"
    "    fldcw 12(%rsp)\n"
    "    addq $16, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size msn_emu_switch, .-msn_emu_switch\n");
#endif

// ------------------------------------------------------------------ the grid runner
namespace msn_emu {

// A kernel error (fail()) abandons the launch; launch() returns 1 and last_error says why.
// No C++ exceptions: AddressSanitizer cannot intercept __cxa_throw in a library loaded into a
// Python that was not started with libstdc++, so a sequential launch leaves with longjmp (the
// frames it skips hold no destructors) and a fiber switches back to the scheduler for good.
static std::string last_error;
static std::string failure;
static std::jmp_buf* failure_jump = nullptr;

enum class State { Runnable, AtBarrier, Done };

struct Fiber {
#ifdef MSN_EMU_FAST_SWITCH
    void* sp;  // saved stack pointer while switched out
#else
    ucontext_t context;
#endif
    uint3 tid;
    State state;
    char* stack;
    size_t stack_size;
    void* fake_stack;  // AddressSanitizer's bookkeeping while the fiber is switched out
};

// The block currently running as fibers (null when threads run one after another).
struct Scheduler {
#ifdef MSN_EMU_FAST_SWITCH
    void* main_sp = nullptr;
#else
    ucontext_t main_context;
#endif
    std::vector<Fiber> fibers;
    Fiber* current = nullptr;
    void (*body)(void*) = nullptr;  // runs the kernel for the current threadIdx
    void* closure = nullptr;
    bool failed = false;
    std::string message;
    const void* main_stack_bottom = nullptr;
    size_t main_stack_size = 0;
};
static Scheduler* scheduler = nullptr;

[[noreturn]] static void leave_fiber(Scheduler& s);

[[noreturn]] static void fail(const std::string& message) {
    failure = message;
    if (scheduler != nullptr && scheduler->current != nullptr) {
        scheduler->failed = true;
        scheduler->message = message;
        leave_fiber(*scheduler);  // never returns
    }
    std::longjmp(*failure_jump, 1);
}

// Fiber stacks: mmap'ed once and kept, each with a PROT_NONE guard page below it so that a
// stack overflow faults instead of silently overwriting a neighbour's stack.
#ifdef MSN_EMU_ASAN
static const size_t fiber_stack_size = 1 << 20;
#else
static const size_t fiber_stack_size = 256 << 10;
#endif
static std::vector<char*> stack_pool;

static char* fiber_stack(size_t i) {
    while (stack_pool.size() <= i) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void* base = mmap(nullptr, fiber_stack_size + page, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return nullptr;
        mprotect(base, page, PROT_NONE);
        stack_pool.push_back(static_cast<char*>(base) + page);
    }
    return stack_pool[i];
}

// The current fiber is finished (returned, or failed): back to the scheduler, for good.
[[noreturn]] static void leave_fiber(Scheduler& s) {
    s.current->state = State::Done;
#ifdef MSN_EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, s.main_stack_bottom, s.main_stack_size);
#endif
#ifdef MSN_EMU_FAST_SWITCH
    void* dead;
    msn_emu_switch(&dead, s.main_sp);  // resumes run_block_as_fibers(); never comes back
#else
    setcontext(&s.main_context);
#endif
    std::abort();
}

static void fiber_main() {
    Scheduler& s = *scheduler;
#ifdef MSN_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &s.main_stack_bottom, &s.main_stack_size);
#endif
    s.body(s.closure);
    leave_fiber(s);
}

// Called by __syncthreads() inside a fiber: park this thread, let the others catch up.
static void barrier() {
    Scheduler* s = scheduler;
    if (s == nullptr)
        fail("__syncthreads() was called by a kernel launched without fibers (the emulator looks "
             "for __syncthreads in the kernel's source and in the functions it calls; one hidden "
             "in a macro is not found): set MINISEGNET_EMU_FIBERS=1");
    Fiber* f = s->current;
    f->state = State::AtBarrier;
#ifdef MSN_EMU_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, s->main_stack_bottom, s->main_stack_size);
#endif
#ifdef MSN_EMU_FAST_SWITCH
    msn_emu_switch(&f->sp, s->main_sp);
#else
    swapcontext(&f->context, &s->main_context);
#endif
#ifdef MSN_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &s->main_stack_bottom, &s->main_stack_size);
#endif
    threadIdx = f->tid;  // resumed: this fiber is the running CUDA thread again
}

static void resume(Scheduler& s, Fiber& f) {
    s.current = &f;
    threadIdx = f.tid;
#ifdef MSN_EMU_ASAN
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, f.stack, f.stack_size);
#endif
#ifdef MSN_EMU_FAST_SWITCH
    msn_emu_switch(&s.main_sp, f.sp);
#else
    swapcontext(&s.main_context, &f.context);
#endif
#ifdef MSN_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

// Run the threads of the current block as fibers, in rounds: each round resumes every thread
// that is not waiting, until it reaches its next __syncthreads() or returns. When no thread is
// runnable, the barrier is complete: release everyone waiting at it and start the next round.
__attribute__((noinline)) static void run_block_as_fibers(Scheduler& s) {
    size_t count = (size_t)blockDim.x * blockDim.y * blockDim.z;
    s.fibers.resize(count);
    size_t i = 0;
    for (unsigned z = 0; z < blockDim.z; ++z)
        for (unsigned y = 0; y < blockDim.y; ++y)
            for (unsigned x = 0; x < blockDim.x; ++x, ++i) {
                Fiber& f = s.fibers[i];
                f.tid = uint3{x, y, z};
                f.state = State::Runnable;
                f.stack = fiber_stack(i);
                if (f.stack == nullptr) {
                    s.failed = true;
                    s.message = "could not allocate a fiber stack (mmap failed)";
                    return;
                }
                f.stack_size = fiber_stack_size;
                f.fake_stack = nullptr;
#ifdef MSN_EMU_ASAN
                // The stack's previous fiber never returned, so its frames' redzones are still
                // poisoned (ASan's swapcontext interceptor clears them; our switch must too).
                ASAN_UNPOISON_MEMORY_REGION(f.stack, f.stack_size);
#endif
#ifdef MSN_EMU_FAST_SWITCH
                // A stack that looks as if msn_emu_switch had been called from fiber_main's
                // first instruction: control words, six zeroed registers, then fiber_main as
                // the return address, placed so that fiber_main starts with the stack
                // alignment the ABI promises (rsp + 8 a multiple of 16).
                void** top = reinterpret_cast<void**>(f.stack + f.stack_size);  // 16-aligned
                void** sp = top - 10;
                unsigned int mxcsr;
                unsigned short fpu_cw;
                __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
                __asm__ volatile("fnstcw %0" : "=m"(fpu_cw));
                std::memcpy(reinterpret_cast<char*>(sp) + 8, &mxcsr, 4);
                std::memcpy(reinterpret_cast<char*>(sp) + 12, &fpu_cw, 2);
                for (int r = 2; r < 8; ++r) sp[r] = nullptr;  // r15 r14 r13 r12 rbx rbp
                sp[8] = reinterpret_cast<void*>(&fiber_main);
                sp[9] = nullptr;  // fiber_main's return address: it never returns
                f.sp = sp;
#else
                getcontext(&f.context);
                f.context.uc_stack.ss_sp = f.stack;
                f.context.uc_stack.ss_size = f.stack_size;
                f.context.uc_link = nullptr;
                makecontext(&f.context, fiber_main, 0);
#endif
            }
    for (;;) {
        for (Fiber& f : s.fibers) {
            if (f.state != State::Runnable) continue;
            resume(s, f);
            if (s.failed) return;
        }
        bool waiting = false;
        for (Fiber& f : s.fibers) {
            if (f.state == State::AtBarrier) {
                f.state = State::Runnable;
                waiting = true;
            }
        }
        if (!waiting) return;  // every thread of the block has returned
    }
}

template <typename F>
static void call_body(void* closure) {
    (*static_cast<F*>(closure))();
}

// Dynamic shared memory at the start of a block: garbage in [0, bytes), poisoned beyond.
static void prepare_shared(unsigned char* buffer, unsigned long long bytes) {
#ifdef MSN_EMU_ASAN
    ASAN_UNPOISON_MEMORY_REGION(buffer, MSN_EMU_DYNAMIC_SHARED_MAX);
#endif
    std::memset(buffer, 0xFF, (size_t)bytes);
#ifdef MSN_EMU_ASAN
    ASAN_POISON_MEMORY_REGION(buffer + bytes, MSN_EMU_DYNAMIC_SHARED_MAX - bytes);
#endif
}

enum Flags { FORCE_FIBERS = 1 };

// Run kernel<<<grid, block, shared_bytes>>> where body() runs one CUDA thread (for the current
// blockIdx/threadIdx). Returns 0, or 1 with last_error set.
template <typename F>
static int launch(const char* kernel, dim3 grid, dim3 block, unsigned long long shared_bytes,
                  int flags, bool uses_syncthreads, void (*prepare)(unsigned long long), F&& body) {
    gridDim = grid;
    blockDim = block;
    bool fibers = uses_syncthreads || (flags & FORCE_FIBERS);
    Scheduler s;
    s.body = &call_body<typename std::remove_reference<F>::type>;
    s.closure = static_cast<void*>(&body);
    std::jmp_buf jump;
    failure_jump = &jump;
    if (setjmp(jump) != 0) {  // fail() in a thread run without fibers
        scheduler = nullptr;
        last_error = std::string(kernel) + ": " + failure;
        return 1;
    }
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                prepare(shared_bytes);
                if (fibers) {
                    scheduler = &s;
                    run_block_as_fibers(s);
                    scheduler = nullptr;
                    if (s.failed) {
                        last_error = std::string(kernel) + ": " + s.message;
                        return 1;
                    }
                    continue;
                }
                for (unsigned z = 0; z < block.z; ++z)
                    for (unsigned y = 0; y < block.y; ++y)
                        for (unsigned x = 0; x < block.x; ++x) {
                            threadIdx = uint3{x, y, z};
                            body();
                        }
            }
    return 0;
}

}  // namespace msn_emu

static inline void __syncthreads() { msn_emu::barrier(); }

#endif  // MINISEGNET_CUDA_EMU_H
