package peft

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/tmpfile"
)

// Save writes the adapter into dir, creating dir if needed, as
// adapter_config.json and adapter_model.safetensors in the form PEFT writes
// and loads: tensors named base_model.model.<module>.lora_A.weight [r, in]
// and .lora_B.weight [out, r] (lora_embedding_A and lora_embedding_B for
// embeddings), full tensors as base_model.model.<name>, the metadata
// {"format": "pt"}, and the configuration with its keys sorted. A module's
// rank, alpha and scale are stored through the configuration (r,
// lora_alpha, rank_pattern, alpha_pattern), from which Load computes them;
// the modules in Ignored are not written, since the adapter does not hold
// their weights.
//
// Save writes only what Load reads back as it is, and checks the adapter
// first, writing nothing if it is inconsistent: a configuration that Load
// would refuse or that does not survive its JSON unchanged, no module, a
// module that target_modules does not select (Load would leave it out),
// whose A or B does not have its shape, whose Rank differs from the r the
// configuration gives it, whose Alpha or Scale, when set, differ from the
// configuration's, or whose FanInFanOut differs from the configuration's, a
// dtype that is not F32, F16, BF16 or F64, a name that is not valid UTF-8
// or used twice, a full tensor that is also a module's weight, a header
// that the reader would refuse.
//
// Both files are written to temporary files in dir first, then renamed
// into place, weights first; if the configuration cannot be put in place,
// the previous weights file is put back, so that an error leaves the old
// adapter as it was.
func Save(dir string, a *Adapter) error {
	if a == nil || a.Config == nil {
		return fmt.Errorf("peft: Save: adapter or its Config is nil: %w", lora.ErrNil)
	}
	if err := a.Config.Check(); err != nil {
		return err
	}
	match, err := a.Config.matchers()
	if err != nil {
		return err
	}
	if len(a.Modules) == 0 {
		return fmt.Errorf("peft: Save: the adapter has no modules, and Load refuses an adapter in which target_modules selects none: %w", ErrInconsistent)
	}
	var tensors []Tensor
	modules := make(map[string]bool, len(a.Modules))
	for _, m := range a.Modules {
		if err := m.check(); err != nil {
			return err
		}
		if !utf8.ValidString(m.Name) {
			return fmt.Errorf("peft: module name %s is not valid UTF-8: %w", quote(m.Name), ErrInconsistent)
		}
		if !match.selects(m.Name, m.Embedding) {
			return fmt.Errorf("peft: module %s is not selected by target_modules %s%s, so Load would leave it out: %w",
				excerpt(m.Name), targetsNote(a.Config), restrictNote(a.Config), ErrInconsistent)
		}
		modules[m.Name] = true
		r, alpha, scale, err := a.Config.resolve(match, m.Name)
		if err != nil {
			return err
		}
		if r != m.Rank {
			return fmt.Errorf("peft: module %s has rank %d, but the configuration gives it r = %d: set R or RankPattern: %w",
				excerpt(m.Name), m.Rank, r, ErrInconsistent)
		}
		if (m.Alpha != 0 && m.Alpha != alpha) || (m.Scale != 0 && m.Scale != scale) {
			return fmt.Errorf("peft: module %s has alpha %v and scale %v, but the configuration gives it alpha %v and scale %v: set LoraAlpha or AlphaPattern: %w",
				excerpt(m.Name), m.Alpha, m.Scale, alpha, scale, ErrInconsistent)
		}
		if !m.Embedding && m.FanInFanOut != a.Config.FanInFanOut {
			return fmt.Errorf("peft: module %s has FanInFanOut %v, but the configuration's fan_in_fan_out is %v: %w",
				excerpt(m.Name), m.FanInFanOut, a.Config.FanInFanOut, ErrInconsistent)
		}
		dt := m.DType
		if dt == "" {
			dt = F32
		}
		if !dt.Float() {
			return fmt.Errorf("peft: module %s: dtype %s, want F32, F16, BF16 or F64: %w", excerpt(m.Name), quote(string(dt)), ErrUnsupported)
		}
		sa, sb := suffixA, suffixB
		if m.Embedding {
			sa, sb = suffixEmbA, suffixEmbB
		}
		ta := Tensor{Name: Prefix + m.Name + sa, DType: dt, Shape: []int{m.Rank, m.In}, Data: make([]byte, len(m.A)*dt.Size())}
		tb := Tensor{Name: Prefix + m.Name + sb, DType: dt, Shape: []int{m.Out, m.Rank}, Data: make([]byte, len(m.B)*dt.Size())}
		EncodeFloats(ta.Data, m.A, dt) // lengths set above
		EncodeFloats(tb.Data, m.B, dt)
		tensors = append(tensors, ta, tb)
	}
	for _, t := range a.Full {
		if t == nil {
			return fmt.Errorf("peft: Save: a nil full tensor: %w", lora.ErrNil)
		}
		if err := t.check(); err != nil {
			return err
		}
		if isLoRAName(t.Name) || t.Name == "" {
			return fmt.Errorf("peft: full tensor %s has the name of a LoRA tensor or none: %w", quote(t.Name), ErrInconsistent)
		}
		if w := strings.TrimSuffix(t.Name, ".weight"); modules[w] {
			return fmt.Errorf("peft: full tensor %s is the weight of module %s, which Load refuses: %w", quote(t.Name), excerpt(w), ErrInconsistent)
		}
		tensors = append(tensors, Tensor{Name: Prefix + t.Name, DType: t.DType, Shape: t.Shape, Data: t.Data})
	}
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("peft: tensor %s would be written twice: %w", quote(t.Name), ErrInconsistent)
		}
		seen[t.Name] = true
	}
	cfg, err := a.Config.MarshalJSON()
	if err != nil {
		return err
	}
	// What Load will read must be what was meant: strings that are not
	// valid UTF-8, for one, would come back changed.
	if back, err := ParseConfig(cfg); err != nil {
		return fmt.Errorf("peft: Save: the configuration would not load back: %w", err)
	} else if again, err := back.MarshalJSON(); err != nil || !bytes.Equal(again, cfg) {
		return fmt.Errorf("peft: Save: the configuration would load back changed (strings that are not valid UTF-8?): %w", ErrInconsistent)
	}
	// WriteSafetensors checks the header before it writes a byte, into a
	// temporary file.
	return saveFiles(dir, cfg, func(f *os.File) error {
		return WriteSafetensors(f, tensors, map[string]string{"format": "pt"})
	})
}

// saveFiles writes the two files of an adapter into dir: both to temporary
// files, then renamed into place, the old weights put back if the
// configuration cannot be; a dir that Save created is removed on error.
func saveFiles(dir string, cfg []byte, weights func(*os.File) error) (err error) {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	if statErr != nil {
		defer func() {
			if err != nil {
				os.Remove(dir) // only if empty
			}
		}()
	}
	wt, err := writeTemp(dir, WeightsFile, weights)
	if err != nil {
		return err
	}
	defer os.Remove(wt) // gone once renamed
	ct, err := writeTemp(dir, ConfigFile, func(f *os.File) error {
		_, err := f.Write(cfg)
		return err
	})
	if err != nil {
		return err
	}
	defer os.Remove(ct)
	wPath, cPath := filepath.Join(dir, WeightsFile), filepath.Join(dir, ConfigFile)
	// Keep the old weights under a second name, to put them back.
	backup := ""
	if fi, err := os.Lstat(wPath); err == nil && fi.Mode().IsRegular() {
		f, err := os.CreateTemp(dir, "."+WeightsFile+".old-*")
		if err != nil {
			return fmt.Errorf("peft: %w", err)
		}
		backup = f.Name()
		f.Close()
		os.Remove(backup)
		if err := os.Link(wPath, backup); err != nil {
			// No hard links here: a copy.
			if err := copyFile(backup, wPath); err != nil {
				os.Remove(backup)
				return fmt.Errorf("peft: keeping the old %s while saving: %w", wPath, err)
			}
		}
		defer func() {
			if backup != "" {
				os.Remove(backup)
			}
		}()
	}
	if err := os.Rename(wt, wPath); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	if err := os.Rename(ct, cPath); err != nil {
		if backup != "" {
			if rerr := os.Rename(backup, wPath); rerr != nil {
				kept := backup
				backup = "" // kept for the user
				return fmt.Errorf("peft: %w; and putting the old weights back failed: %v (they are in %s)", err, rerr, kept)
			}
		} else {
			os.Remove(wPath)
		}
		return fmt.Errorf("peft: %w (the previous adapter is left as it was)", err)
	}
	return nil
}

// writeTemp writes a temporary file beside dir/name with write and returns
// its path; on error it removes it.
func writeTemp(dir, name string, write func(*os.File) error) (string, error) {
	p, err := tmpfile.Write(dir, name, write)
	if err != nil {
		return "", fmt.Errorf("peft: %w", err)
	}
	return p, nil
}

// copyFile copies the file src to a new file dst.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
