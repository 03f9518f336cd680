//go:build !amd64 || purego

package cpu

// packT32 sets dst[p·32+i] = src[i·ld+p] for i < 32 and p < kc, kc a
// positive multiple of 16: the portable form of the amd64 kernel.
func packT32(dst, src *float32, kc, ld int) {
	d, s := f32s(dst, kc*32), f32s(src, 31*ld+kc)
	for i := range 32 {
		for p := range kc {
			d[p*32+i] = s[i*ld+p]
		}
	}
}
