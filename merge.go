package lora

import (
	"fmt"
	"math"
)

// Merge folds the adapter into the base weight in place: W ← W + s·B·A.
// Afterwards Forward computes x·Wᵀ alone. It refuses, leaving W untouched, a
// merged layer (ErrMerged), an NF4 W (ErrDType: Dequantize it into a float
// matrix and merge there, as QLoRA's merge does), and with ErrNonFinite an adapter holding NaN or
// ±Inf (as PEFT's safe_merge does), a W holding NaN or ±Inf, and an update
// that would overflow W's dtype in any element: Merge never creates a NaN or
// ±Inf in W. The proof of finiteness costs no pass over W in the common
// case (see mergeOp); Merge needs exclusive use of W (see the package
// documentation).
//
// On an F16 or BF16 W each element becomes round(W + s·B·A): the stored value
// widened to float32, s·B·A and the sum formed in float32, and the sum
// rounded once, to nearest even, to W's dtype. Merge then Unmerge restores
// each element to within one ulp (of W's dtype) of max(|W|, |s·B·A|), and
// repeated cycles do not drift further than two.
//
// W is the caller's, and whatever else computes with it sees the merged W:
// another Layer on it, and a Bank over it, whose Forward then adds its
// adapters to W + s·B·A until Unmerge. Merge changes the base weight of
// every user of W.
//
// On the GPU, Merge waits for the queued work: it reads back
// A and B, and W's largest magnitude when it is not known, before it
// enqueues the update.
func (l *Layer) Merge() error { return l.mergeOp("Merge", true) }

// Unmerge takes the adapter out of the base weight in place: W ← W − s·B·A.
// It returns an error wrapping ErrNotMerged on a layer that is not merged.
// The subtraction uses bit for bit the same s·B·A that Merge added, so W is
// restored to within one rounding of each element. Like Merge, it refuses
// (ErrNonFinite, W untouched, the layer still merged) a result that would
// hold NaN or ±Inf, which only a W written since Merge can cause.
func (l *Layer) Unmerge() error { return l.mergeOp("Unmerge", false) }

// mergeMargin returns the factor that covers the float32 roundings of a
// rank-r update of W, and the float64 roundings of the bound itself.
//
// rankUpdate computes each element as w' = fl(w + d), with coefficients
// γₖ = fl(c·B[i,k]) and d accumulated from zero in k order,
// dₘ = fl(dₘ₋₁ + fl(γₘ·A[m,j])) (or one fused rounding per step). With
// u = 2⁻²⁴ and every exact intermediate below MaxFloat32, each rounding
// multiplies a magnitude by at most (1 + u), so by induction over the steps
//
//	|γₖ|  ≤ |c|·|B[i,k]|·(1+u)
//	|dₘ|  ≤ Σₖ≤ₘ |γₖ|·|A[k,j]|·(1+u)ᵐ ≤ |c|·Σₖ|B[i,k]|·max|A|·(1+u)ʳ⁺¹
//	|w'|  ≤ (|w| + |d|)·(1+u) ≤ (max|W| + |c|·maxRowB·max|A|)·(1+u)ʳ⁺²
//
// (any other order of the r additions, as a GPU may use, has the same bound).
// (1+u)ʳ⁺² ≤ 1 + 2(r+2)u while (r+2)u ≤ 1, and the float64 sums and
// products that compute the bound are off by less than (r+4)·2⁻⁵³ relative:
// 1 + (2r+8)u covers both. So when that product is below MaxFloat32 no step
// can round to ±Inf, and with finite inputs no NaN can arise either.
func mergeMargin(r int) float64 { return 1 + float64(2*r+8)*0x1p-24 }

// mergeOp applies W ← W + c·B·A with c = ±s. It first proves the result
// finite: with maxA = max|A|, maxRowB = max_i Σₖ|B[i,k]| (adapterBound, a
// pass over the small A and B) and W's cached bound on max|W| (absMax, one
// read pass, only when no bound is known), the bound of mergeMargin decides
// in the common case, and W's cached bound becomes the bound of the result:
// repeated Merge/Unmerge cycles stay one pass over W each. When the bound
// is too coarse, rankFinite computes the result exactly without writing W,
// and the update is refused if any element is not finite.
func (l *Layer) mergeOp(op string, merge bool) error {
	if l == nil {
		return fmt.Errorf("lora: %s: layer is nil: %w", op, ErrNil)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check(op); err != nil {
		return err
	}
	if l.w.dt == NF4 {
		return fmt.Errorf("lora: %s: W is nf4: Dequantize it into an F32, F16 or BF16 matrix and merge there, as QLoRA's merge does; W left unchanged: %w", op, ErrDType)
	}
	if merge && l.merged {
		return fmt.Errorf("lora: %s: %w", op, ErrMerged)
	}
	if !merge && !l.merged {
		return fmt.Errorf("lora: %s: %w", op, ErrNotMerged)
	}
	c := l.scale
	if !merge {
		c = -c
	}
	w := l.w
	maxA, maxRowB, err := be.adapterBound(l.a, l.b)
	if err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	if !isFinite(maxA) || !isFinite(maxRowB) {
		return fmt.Errorf("lora: %s: A or B holds NaN or Inf, W left unchanged: %w", op, ErrNonFinite)
	}
	if !w.boundKnown {
		m, err := be.absMax(w)
		if err != nil {
			return fmt.Errorf("lora: %s: %w", op, err)
		}
		w.bound, w.boundKnown = float64(m), true
	}
	if !isFinite(w.bound) {
		return fmt.Errorf("lora: %s: W holds NaN or Inf, W left unchanged: %w", op, ErrNonFinite)
	}
	grow := mergeMargin(l.a.rows)
	absC := math.Abs(float64(c))
	delta := absC * maxRowB * maxA
	total := (w.bound + delta) * grow
	// A float32 result at most maxFinite(w.dt) rounds to at most that in
	// W's dtype, itself representable: the bound needs no further margin.
	if absC*maxRowB*grow < math.MaxFloat32 && total < maxFinite(w.dt) {
		w.least.Store(0) // W changes; its bound follows, below
		if err := be.rankUpdate(w, l.a, l.b, c); err != nil {
			w.forgetBound()
			return fmt.Errorf("lora: %s: %w", op, err)
		}
		w.bound = roundedBound(w.dt, total)
	} else {
		ok, err := be.rankFinite(w, l.a, l.b, c)
		if err != nil {
			return fmt.Errorf("lora: %s: %w", op, err)
		}
		if !ok {
			sign := "+"
			if !merge {
				sign = "−"
			}
			return fmt.Errorf("lora: %s: W %s s·B·A overflows %s (max|W| ≤ %.4g, |s|·max_i Σₖ|B[i,k]|·max|A| = %.4g), W left unchanged: %w",
				op, sign, w.dt.long(), w.bound, delta, ErrNonFinite)
		}
		w.forgetBound()
		if err := be.rankUpdate(w, l.a, l.b, c); err != nil {
			return fmt.Errorf("lora: %s: %w", op, err)
		}
	}
	l.merged = merge
	return nil
}

// isFinite reports whether v is neither NaN nor ±Inf.
func isFinite(v float64) bool { return v-v == 0 }
