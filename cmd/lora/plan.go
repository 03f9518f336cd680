package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/golora/lora/internal/sysmem"
	"github.com/golora/lora/peft"
)

// What happens to one tensor of the base model.
type action int

const (
	actCopy       action = iota // bytes copied as they are
	actConvert                  // converted to another float dtype
	actMerge                    // W + scale·s·ΔW
	actReplace                  // replaced by a full tensor of the adapter
	actDequantize               // a 4-bit weight written unquantized
)

// job is what becomes of one tensor of the base model in the output.
type job struct {
	act action
	// in is the tensor in the base file; for a 4-bit weight, as it is
	// unquantized: the dtype and shape of its quantization state.
	in     peft.TensorInfo
	out    peft.TensorInfo       // in the output file; Offset set by EncodeHeader
	module *peft.Module          // actMerge, with the final scale and layout
	full   *peft.Tensor          // actReplace
	nf4    *peft.QuantizedWeight // a 4-bit weight, whose codes are the base tensor
}

// shardPlan is the output file of one shard of the base model.
type shardPlan struct {
	sh      *shard
	jobs    []job    // in the order of the base file's data
	dropped []string // tensors of quantization state, left out
	header  []byte
	size    int64 // of the output file
}

// mergeStats counts what the merge does, for its summary.
type mergeStats struct {
	merged, replaced, converted, copied, skipped, ignored int
	modelType                                             string // config.json's, when it is a Conv1D family
	conv1D                                                int    // modules merged as Conv1D layers by model_type
	layoutOverridden                                      int    // of which the adapter's fan_in_fan_out disagreed
	dequantized, dequantMerged                            int    // 4-bit weights written unquantized, and of them merged
	dropped                                               int    // tensors of their quantization state left out
}

// planMerge decides what becomes of every tensor of the base model, whose
// 4-bit weights are q, and checks that the adapter fits it.
func planMerge(m *model, q *quantized, ad *peft.Adapter, o mergeOptions, outDType peft.DType, stderr io.Writer) ([]*shardPlan, mergeStats, error) {
	p := &planner{
		m: m, q: q, o: o, outDType: outDType, stderr: stderr,
		modules: map[string]*peft.Module{},
		fulls:   map[string]*peft.Tensor{},
	}
	p.warnIgnored(ad.Ignored)
	if m.index != nil {
		for _, name := range m.index.unlisted {
			if !q.isAux(name) {
				fmt.Fprintf(stderr, "lora merge: warning: %s holds tensor %s, which the index's weight_map does not list: written, and listed in the output's index\n",
					quoteName(m.shards[m.where[name].shard].name), quoteName(name))
			}
		}
	}
	family, known, err := conv1DFamily(m.dir)
	if err != nil {
		return nil, p.st, err
	}
	p.family, p.typeKnown, p.st.modelType = family, known, family
	if err := p.planModules(ad.Modules); err != nil {
		return nil, p.st, err
	}
	if err := p.planFulls(ad.Full); err != nil {
		return nil, p.st, err
	}
	var plans []*shardPlan
	for _, sh := range m.shards {
		sp, err := p.planShard(sh)
		if err != nil {
			return nil, p.st, err
		}
		plans = append(plans, sp)
	}
	return plans, p.st, nil
}

// planner is the state of planMerge: what it has decided so far.
type planner struct {
	m         *model
	q         *quantized // the 4-bit weights of m, or nil
	o         mergeOptions
	outDType  peft.DType // "" to keep each tensor's
	stderr    io.Writer
	family    string                  // config.json's model_type when it is a Conv1D family
	typeKnown bool                    // config.json gives a model_type
	modules   map[string]*peft.Module // to merge, by base tensor name, with the final scale and layout
	fulls     map[string]*peft.Tensor // to replace the base tensor of that name
	st        mergeStats
}

// warnIgnored warns about the modules whose LoRA weights the adapter file
// holds but its configuration does not select.
func (p *planner) warnIgnored(names []string) {
	for _, name := range names {
		fmt.Fprintf(p.stderr, "lora merge: warning: the adapter file has LoRA weights for %s, which its configuration does not select (target_modules, exclude_modules, layers_to_transform): not merged\n", quoteName(name))
	}
	p.st.ignored = len(names)
}

// claim refuses a base tensor that another entry of the adapter targets
// already; what names the entry that asks for it.
func (p *planner) claim(base, what string) error {
	if p.modules[base] != nil || p.fulls[base] != nil {
		return fmt.Errorf("%s and another entry of the adapter both target %q", what, base)
	}
	return nil
}

// planModules plans the merge of every module of the adapter into its base
// weight, skipping those without one under -allow-missing.
func (p *planner) planModules(mods []*peft.Module) error {
	for _, mod := range mods {
		ref, base, ok := p.m.find(mod.Weight())
		if !ok {
			if p.o.allowMissing {
				fmt.Fprintf(p.stderr, "lora merge: skipping module %s: the base model has no %s\n", quoteName(mod.Name), quoteName(mod.Weight()))
				p.st.skipped++
				continue
			}
			return fmt.Errorf("module %s: the base model has no tensor %q (use -allow-missing to skip it)", quoteName(mod.Name), mod.Weight())
		}
		if err := p.claim(base, "module "+quoteName(mod.Name)); err != nil {
			return err
		}
		scaled, err := p.planModule(mod, base, p.baseInfo(ref.info))
		if err != nil {
			return err
		}
		p.modules[base] = scaled
	}
	if len(mods) > 0 && len(p.modules) == 0 {
		return fmt.Errorf("none of the adapter's %s found its base weight in %s: is it the adapter's base model?",
			plural(len(mods), "module"), p.o.base)
	}
	return nil
}

// planModule checks mod against its base weight, the tensor base described
// by info, and returns the module to merge: mod in the layout of the model,
// with its scale times -scale.
func (p *planner) planModule(mod *peft.Module, base string, info peft.TensorInfo) (*peft.Module, error) {
	scaled := *mod
	scaled.FanInFanOut = p.fanInFanOut(mod)
	rows, cols := scaled.WeightShape()
	if !info.DType.Float() {
		return nil, fmt.Errorf("module %s: base tensor %q is %s, not a floating-point weight", quoteName(mod.Name), base, info.DType)
	}
	if !slices.Equal(info.Shape, []int{rows, cols}) {
		return nil, fmt.Errorf("module %s: base tensor %q has shape %v, but the adapter (A %d×%d, B %d×%d%s) needs [%d %d]",
			quoteName(mod.Name), base, info.Shape, mod.Rank, mod.In, mod.Out, mod.Rank, layoutNote(&scaled), rows, cols)
	}
	if !allFinite(mod.A) || !allFinite(mod.B) {
		return nil, fmt.Errorf("module %s: A or B holds NaN or Inf", quoteName(mod.Name))
	}
	s := float64(mod.Scale) * p.o.scale
	if math.IsInf(float64(float32(s)), 0) {
		return nil, fmt.Errorf("module %s: scale %v × %v overflows float32", quoteName(mod.Name), mod.Scale, p.o.scale)
	}
	scaled.Scale = float32(s)
	need := mergeMemory(rows, cols, mod.Rank, info.DType, cmp.Or(p.outDType, info.DType))
	if q := p.q.weight(base); q != nil {
		need = mergeMemory(rows, cols, mod.Rank, peft.F32, peft.F32) + nf4Memory(q) // merged in float32
	}
	if err := sysmem.Check(fmt.Sprintf("merging %q (%d×%d, rank %d)", base, rows, cols, mod.Rank), need); err != nil {
		return nil, err
	}
	return &scaled, nil
}

// fanInFanOut returns whether mod merges into a weight stored [in, out]. In
// a model of a Conv1D family, PEFT decides by the kind of layer, whatever
// the adapter says, and so does the merge, with a warning where the two
// disagree; elsewhere the adapter decides.
func (p *planner) fanInFanOut(mod *peft.Module) bool {
	if p.family == "" || mod.Embedding {
		if !p.typeKnown && !mod.Embedding && !mod.FanInFanOut && mod.In == mod.Out && isConv1DModule(mod.Name) {
			fmt.Fprintf(p.stderr, "lora merge: warning: module %s is square (%d×%d), so %s: its name is a Conv1D layer's of GPT-2 and its kin, "+
				"and no config.json beside the base model gives a model_type to tell: merged as the adapter says, fan_in_fan_out false, stored out×in\n",
				quoteName(mod.Name), mod.Out, mod.In, strings.ReplaceAll(squareNote, "\n", " "))
		}
		return mod.FanInFanOut
	}
	conv := isConv1DModule(mod.Name)
	if conv != mod.FanInFanOut {
		fmt.Fprintf(p.stderr, "lora merge: warning: module %s: the adapter says fan_in_fan_out %v, but in a %s model it is %s: merging it as PEFT does, with fan_in_fan_out %v\n",
			quoteName(mod.Name), mod.FanInFanOut, p.family, layerKind(conv), conv)
		p.st.layoutOverridden++
	}
	if conv {
		p.st.conv1D++
	}
	return conv
}

// planFulls plans the replacement of base tensors by those the adapter
// saved whole, skipping those without one under -allow-missing.
func (p *planner) planFulls(ts []*peft.Tensor) error {
	for _, t := range ts {
		ref, base, ok := p.m.find(t.Name)
		if !ok {
			if p.o.allowMissing {
				fmt.Fprintf(p.stderr, "lora merge: skipping full tensor %s: the base model has no tensor of that name\n", quoteName(t.Name))
				p.st.skipped++
				continue
			}
			return fmt.Errorf("the adapter replaces %q, but the base model has no such tensor (use -allow-missing to skip it)", t.Name)
		}
		if err := p.claim(base, "full tensor "+quoteName(t.Name)); err != nil {
			return err
		}
		if p.q.isAux(base) {
			return fmt.Errorf("the adapter replaces %q, a tensor of the quantization state of a 4-bit weight, which the merge leaves out", base)
		}
		if err := checkFull(t, base, p.baseInfo(ref.info)); err != nil {
			return err
		}
		p.fulls[base] = t
	}
	return nil
}

// checkFull checks that the adapter's tensor t can replace the base tensor
// base described by info: the same shape, and the same dtype or two float
// dtypes.
func checkFull(t *peft.Tensor, base string, info peft.TensorInfo) error {
	if !slices.Equal(info.Shape, t.Shape) {
		return fmt.Errorf("the adapter's %q has shape %v, but the base tensor %q has %v", t.Name, t.Shape, base, info.Shape)
	}
	if t.DType != info.DType && (!t.DType.Float() || !info.DType.Float()) {
		return fmt.Errorf("the adapter's %q is %s, and the base tensor %q is %s: no conversion between them", t.Name, t.DType, base, info.DType)
	}
	return nil
}

// planShard plans the output file of sh: a job for each of its tensors, in
// the order of their data in the base file, and the header.
func (p *planner) planShard(sh *shard) (*shardPlan, error) {
	sp := &shardPlan{sh: sh}
	infos := slices.Clone(sh.st.Tensors())
	slices.SortStableFunc(infos, func(a, b peft.TensorInfo) int { return cmp.Compare(a.Offset, b.Offset) })
	outInfos := make([]peft.TensorInfo, 0, len(infos))
	for _, in := range infos {
		if p.q.isAux(in.Name) {
			sp.dropped = append(sp.dropped, in.Name)
			p.st.dropped++
			continue
		}
		j := p.planTensor(p.baseInfo(in))
		sp.jobs = append(sp.jobs, j)
		outInfos = append(outInfos, j.out)
	}
	h, err := peft.EncodeHeader(outInfos, sh.st.Metadata())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", quoteName(sh.name), err)
	}
	sp.header = h
	sp.size = int64(len(h))
	for i := range sp.jobs {
		sp.jobs[i].out = outInfos[i]
		sp.size += outInfos[i].Length
	}
	return sp, nil
}

// planTensor decides what becomes of the base tensor in (as baseInfo
// gives it), and counts it.
func (p *planner) planTensor(in peft.TensorInfo) job {
	j := job{in: in, out: peft.TensorInfo{Name: in.Name, DType: in.DType, Shape: in.Shape}, nf4: p.q.weight(in.Name)}
	if p.outDType != "" && in.DType.Float() {
		j.out.DType = p.outDType
	}
	switch {
	case p.modules[in.Name] != nil:
		j.act, j.module = actMerge, p.modules[in.Name]
		p.st.merged++
		if j.nf4 != nil {
			p.st.dequantized++
			p.st.dequantMerged++
		}
	case p.fulls[in.Name] != nil:
		j.act, j.full = actReplace, p.fulls[in.Name]
		p.st.replaced++
	case j.nf4 != nil:
		j.act = actDequantize
		p.st.dequantized++
	case j.out.DType != in.DType:
		j.act = actConvert
		p.st.converted++
	default:
		j.act = actCopy
		p.st.copied++
	}
	return j
}

// baseInfo returns the base tensor described by info as the merge sees
// it: as it is, or for a 4-bit weight as it is unquantized, with the dtype
// and shape of its quantization state.
func (p *planner) baseInfo(info peft.TensorInfo) peft.TensorInfo {
	q := p.q.weight(info.Name)
	if q == nil {
		return info
	}
	return peft.TensorInfo{Name: info.Name, DType: q.DType, Shape: []int{q.Rows, q.Cols}}
}

// layoutNote says, for an error, that m's base weight is stored [in, out];
// "" for one stored [out, in].
func layoutNote(m *peft.Module) string {
	switch {
	case m.Embedding:
		return ", an embedding stored [in, out]"
	case m.FanInFanOut:
		return ", fan_in_fan_out: stored [in, out]"
	}
	return ""
}

// layerKind names, for a warning, the kind of layer a module is in a model
// of a Conv1D family, and how it stores its weight.
func layerKind(conv1D bool) string {
	if conv1D {
		return "a Conv1D layer, stored [in, out]"
	}
	return "an nn.Linear layer, stored [out, in]"
}
