#!/bin/sh
# resources.sh writes kernels/resources.txt: the registers per thread and
# the static shared memory per block of every kernel of kernels/lora.fatbin
# for every GPU architecture it holds SASS for, as
# cuobjdump --dump-resource-usage reports them, under a header with the
# fatbin's SHA-256 (a test of package kernels fails when it is not that of
# the committed fatbin). Run it after make kernels, from the repository root.
set -eu
fatbin=kernels/lora.fatbin
out=kernels/resources.txt
sum=$(sha256sum "$fatbin" | cut -d' ' -f1)
{
	echo "# Registers per thread and static shared memory per block (bytes) of every"
	echo "# kernel of lora.fatbin, by architecture: cuobjdump --dump-resource-usage."
	echo "# sm_90's shared memory includes the 1 KB the driver reserves per block from"
	echo "# sm_80 on. Made by kernels/resources.sh from the fatbin of this SHA-256:"
	echo "fatbin $sum"
	cuobjdump --dump-resource-usage "$fatbin" |
		awk '/^arch = sm_/ { arch = substr($3, 4) }
			/^ Function / { f = $2; sub(/:$/, "", f) }
			/^  REG:/ { reg = $1; sh = $3; sub(/^REG:/, "", reg); sub(/^SHARED:/, "", sh); print arch, f, reg, sh }' |
		sort -k1,1n -k2,2
} >"$out.tmp"
mv "$out.tmp" "$out"
