/*
 * emu_api.h: the C interface of the CPU emulation of the kernels (emu.h).
 * Plain C, includable from cgo. The functions are defined when lora.cu is
 * compiled by a C++20 compiler without nvcc.
 */
#ifndef LORA_EMU_API_H
#define LORA_EMU_API_H

#define LORA_EMU_OK 0
#define LORA_EMU_ERR_UNKNOWN_KERNEL 1 /* no kernel registered under that name */
#define LORA_EMU_ERR_BLOCK 2          /* a block dimension is 0, or bx*by*bz > 1024,
                                         or bx > 1024, by > 1024, bz > 64 */
#define LORA_EMU_ERR_GRID 3           /* a grid dimension is 0, gx > 2^31-1, or gy or gz > 65535 */
#define LORA_EMU_ERR_SHMEM 4          /* dynamic shared memory > LORA_EMU_MAX_SHMEM */
#define LORA_EMU_ERR_THREADS 5        /* the worker threads could not be started */
#define LORA_EMU_ERR_ARGS 6           /* args is NULL or holds a NULL entry */
#define LORA_EMU_ERR_NARGS 7          /* nargs is not the kernel's number of parameters */
#define LORA_EMU_ERR_KERNEL 8         /* a launched kernel faulted (lora_emu_sync, lora_emu_poll) */

#define LORA_EMU_MAX_THREADS 1024
#define LORA_EMU_MAX_SHMEM 49152

#ifdef __cplusplus
extern "C" {
#endif

/* Queues kernel `name` on grid (gx,gy,gz) x block (bx,by,bz) with `shmem`
 * bytes of dynamic shared memory, and returns without waiting for it. args
 * follows cuLaunchKernel's kernelParams: args[i] points to the value of the
 * i-th parameter, for i < nargs, and nargs must be the kernel's number of
 * parameters (no entry past nargs is read); the values are copied before
 * the call returns. Launches run one after another, in the order queued.
 * Returns LORA_EMU_OK or the error code of an invalid launch, at once; a
 * fault inside the kernel is reported by lora_emu_sync or lora_emu_poll. */
int lora_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                    unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                    void** args, int nargs);

/* Waits for every queued launch. Returns LORA_EMU_OK, or LORA_EMU_ERR_KERNEL
 * when a launch faulted, with the first fault's description in msg (len
 * bytes at most, NUL-terminated; msg may be NULL). A fault is sticky: every
 * later call reports it, and queued launches after it do not run. */
int lora_emu_sync(char* msg, int len);

/* lora_emu_sync without the wait: the fault of the launches run so far. */
int lora_emu_poll(char* msg, int len);

/* The seed of the order of blocks and threads: LORA_EMU_SEED when set,
 * otherwise drawn once per process. */
unsigned long long lora_emu_seed(void);

/* The number of registered kernels, and the name of the i-th (NULL when i is
 * out of range); names are listed in ascending order. */
int lora_emu_kernel_count(void);
const char* lora_emu_kernel_name(int i);

/* The number of parameters of kernel `name`, or -1 if it is unknown. */
int lora_emu_kernel_nargs(const char* name);

#ifdef __cplusplus
}
#endif

#endif /* LORA_EMU_API_H */
