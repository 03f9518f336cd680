//go:build cudaemu

// The emulator's own stream operations (emu.go), queued as kernels so that
// they run in stream order with the launches, as a GPU runs a stream-ordered
// free or an asynchronous copy: LORA_EMU_SECONDARY leaves the emulator's
// entry points to emu_kernels.cc, and the kernels join its registry. Their
// names start with emuop_, which no kernel of lora.fatbin does. Each runs on
// one thread of one block.
#define LORA_EMU_SECONDARY
#include <string.h>

#include "emu.h"

// The stream reaches the free of bytes at p: the memory is filled with the
// pattern of unwritten shared memory, 0xffa5a5a5 in each whole 32-bit word
// (a signalling NaN as a float), 0xa5 in the bytes after the last, so that
// a kernel that still reads it through an address held in device memory,
// which the emulator cannot check, computes NaN. The memory itself stays
// allocated until the host has waited for the stream (see emu.go).
extern "C" __global__ void emuop_release(unsigned char* p, long long bytes) {
  long long words = bytes / 4;
  unsigned* w = reinterpret_cast<unsigned*>(p);
  for (long long i = 0; i < words; ++i) w[i] = 0xffa5a5a5u;
  memset(p + 4 * words, 0xa5, static_cast<size_t>(bytes - 4 * words));
}

// A copy from the host in stream order: src is the emulator's copy of the
// caller's bytes, taken when the copy was queued; the copy frees it.
extern "C" __global__ void emuop_copy(unsigned char* dst, unsigned char* src, long long bytes) {
  memcpy(dst, src, static_cast<size_t>(bytes));
  free(src);
}

LORA_EMU_REGISTER(emuop_release)
LORA_EMU_REGISTER(emuop_copy)
