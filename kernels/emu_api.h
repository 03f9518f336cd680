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
#define LORA_EMU_ERR_GRID 3           /* a grid dimension is 0, or gy or gz > 65535 */
#define LORA_EMU_ERR_SHMEM 4          /* dynamic shared memory > LORA_EMU_MAX_SHMEM */
#define LORA_EMU_ERR_THREADS 5        /* the worker threads could not be started */
#define LORA_EMU_ERR_ARGS 6           /* args is NULL or holds a NULL entry */
#define LORA_EMU_ERR_NARGS 7          /* nargs is not the kernel's number of parameters */

#define LORA_EMU_MAX_THREADS 1024
#define LORA_EMU_MAX_SHMEM 49152

#ifdef __cplusplus
extern "C" {
#endif

/* Runs kernel `name` on grid (gx,gy,gz) x block (bx,by,bz) with `shmem`
 * bytes of dynamic shared memory, synchronously. args follows
 * cuLaunchKernel's kernelParams: args[i] points to the value of the i-th
 * parameter, for i < nargs, and nargs must be the kernel's number of
 * parameters (no entry past nargs is read). Launches are serialized.
 * Returns LORA_EMU_OK or an error code. */
int lora_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                    unsigned bx, unsigned by, unsigned bz, unsigned shmem,
                    void** args, int nargs);

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
