package peft

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// AllLinear is the value of target_modules that PEFT expands, when it
// creates an adapter, to every linear layer of the model but its output
// layer. In an adapter file it selects every module whose pair is
// lora_A.weight and lora_B.weight (a Linear or Conv1D layer of the base
// model, as PEFT names them), and no embedding (lora_embedding_A and
// lora_embedding_B): PEFT's expansion picks the modules of those two
// types, and the output layer it leaves out has no pair in the file.
// As in PEFT, the comparison ignores case.
const AllLinear = "all-linear"

// keyMatcher matches a module name against one key of a rank_pattern or
// alpha_pattern, as Python's re.match(rf"(.*\.)?({key})$", name) does.
type keyMatcher struct {
	key string
	// atoms, when re is nil: the key is a fixed sequence of characters,
	// each a literal rune or, as -1, any character but a newline (the
	// common "model.layers.0.q_proj", whose dots match any character).
	atoms []rune
	re    *regexp.Regexp
	// suffix and literals, when re is set: a literal that every matching
	// name ends with, and literals that every matching name contains; a
	// name without them is rejected without running re.
	suffix   string
	literals []string
}

// newKeyMatcher compiles key. An expression that RE2 cannot compile (a
// look-ahead, a back-reference) is an error wrapping ErrUnsupported.
func newKeyMatcher(key string) (*keyMatcher, error) {
	k := &keyMatcher{key: key}
	// Python inserts the key into the pattern as text; a key that parses on
	// its own means the same inside the group.
	if t, err := syntax.Parse(key, syntax.Perl); err == nil {
		t = t.Simplify()
		if atoms, ok := fixedAtoms(t); ok {
			k.atoms = atoms
			return k, nil
		}
		k.suffix = literalSuffix(t)
		k.literals = requiredLiterals(t, nil)
	}
	re, err := regexp.Compile(`^(?:(.*\.)?(` + key + `)$)`)
	if err != nil {
		return nil, fmt.Errorf("peft: pattern key %s is not a regular expression this package can use: %v: %w", quote(key), err, ErrUnsupported)
	}
	k.re = re
	return k, nil
}

// fixedAtoms returns the atoms of an expression made only of literal runes
// (without case folding) and of '.', and false for any other expression.
func fixedAtoms(t *syntax.Regexp) ([]rune, bool) {
	switch t.Op {
	case syntax.OpLiteral:
		if t.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return slices.Clone(t.Rune), true
	case syntax.OpAnyCharNotNL:
		return []rune{-1}, true
	case syntax.OpEmptyMatch:
		return []rune{}, true
	case syntax.OpConcat:
		var out []rune
		for _, s := range t.Sub {
			a, ok := fixedAtoms(s)
			if !ok {
				return nil, false
			}
			out = append(out, a...)
		}
		return out, true
	}
	return nil, false
}

// literalSuffix returns a literal that every string matched by t ends with,
// possibly empty.
func literalSuffix(t *syntax.Regexp) string {
	switch t.Op {
	case syntax.OpLiteral:
		if t.Flags&syntax.FoldCase == 0 {
			return string(t.Rune)
		}
	case syntax.OpConcat:
		if n := len(t.Sub); n > 0 {
			return literalSuffix(t.Sub[n-1])
		}
	case syntax.OpCapture:
		return literalSuffix(t.Sub[0])
	}
	return ""
}

// requiredLiterals appends to out the literals that every string matched
// by t contains.
func requiredLiterals(t *syntax.Regexp, out []string) []string {
	switch t.Op {
	case syntax.OpLiteral:
		if t.Flags&syntax.FoldCase == 0 {
			out = append(out, string(t.Rune))
		}
	case syntax.OpConcat:
		for _, s := range t.Sub {
			out = requiredLiterals(s, out)
		}
	case syntax.OpCapture, syntax.OpPlus:
		out = requiredLiterals(t.Sub[0], out)
	case syntax.OpRepeat:
		if t.Min >= 1 {
			out = requiredLiterals(t.Sub[0], out)
		}
	}
	return out
}

// match reports whether the key selects the module called name.
func (k *keyMatcher) match(name string) bool {
	if k.re != nil {
		if !strings.HasSuffix(name, k.suffix) {
			return false
		}
		for _, l := range k.literals {
			if !strings.Contains(name, l) {
				return false
			}
		}
		return k.re.MatchString(name)
	}
	end := len(name)
	for j := len(k.atoms) - 1; j >= 0; j-- {
		if end == 0 {
			return false
		}
		r, size := utf8.DecodeLastRuneInString(name[:end])
		if a := k.atoms[j]; (a < 0 && r == '\n') || (a >= 0 && r != a) {
			return false
		}
		end -= size
	}
	if end == 0 {
		return true
	}
	// (.*\.) before the key: a dot, after anything but a newline.
	return name[end-1] == '.' && !strings.Contains(name[:end-1], "\n")
}

// patternMatcher is a compiled Pattern.
type patternMatcher []*keyMatcher

func compilePattern(p Pattern) (patternMatcher, error) {
	m := make(patternMatcher, len(p))
	for i, e := range p {
		k, err := newKeyMatcher(e.Key)
		if err != nil {
			return nil, err
		}
		m[i] = k
	}
	return m, nil
}

// lookup returns the index in p of the first key that selects name, or -1.
func (m patternMatcher) lookup(name string) int {
	for i, k := range m {
		if k.match(name) {
			return i
		}
	}
	return -1
}

// sameKeys reports whether m was compiled from the keys of p.
func (m patternMatcher) sameKeys(p Pattern) bool {
	if len(m) != len(p) {
		return false
	}
	for i, k := range m {
		if k.key != p[i].Key {
			return false
		}
	}
	return true
}

// nameSet is a compiled target_modules or exclude_modules: a list of names,
// each selecting the module of that name and those whose name ends with
// "." and it, or a regular expression that must match the whole name.
type nameSet struct {
	names map[string]bool
	re    *regexp.Regexp
}

func compileNameSet(field string, list []string, expr string) (*nameSet, error) {
	if expr != "" {
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			return nil, fmt.Errorf("peft: %s %s is not a regular expression this package can use: %v: %w", field, quote(expr), err, ErrUnsupported)
		}
		return &nameSet{re: re}, nil
	}
	s := &nameSet{names: make(map[string]bool, len(list))}
	for _, n := range list {
		s.names[n] = true
	}
	return s, nil
}

// exact reports whether name is one of the listed names.
func (s *nameSet) exact(name string) bool { return s.re == nil && s.names[name] }

// match reports whether the set selects name.
func (s *nameSet) match(name string) bool {
	if s.re != nil {
		return s.re.MatchString(name)
	}
	if s.names[name] {
		return true
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '.' && s.names[name[i+1:]] {
			return true
		}
	}
	return false
}

// matchers is everything of a Config that is compiled: target_modules,
// exclude_modules, layers_pattern and the keys of rank_pattern and
// alpha_pattern, with copies of what they were compiled from.
type matchers struct {
	targetList, excludeList, layersPattern []string
	targetExpr, excludeExpr                string
	layers                                 []int

	allLinear     bool
	target        *nameSet
	exclude       *nameSet // nil when there is none
	layerSet      map[int]bool
	layerPatterns []*regexp.Regexp // nil when layers_to_transform is not used
	rank, alpha   patternMatcher
}

// configCache holds the matchers of a Config, built once and rebuilt only
// when the fields they come from change.
type configCache struct {
	mu sync.Mutex
	m  *matchers
}

// fresh reports whether m was compiled from c's current fields.
func (m *matchers) fresh(c *Config) bool {
	return m.targetExpr == c.TargetModulesRegex && slices.Equal(m.targetList, c.TargetModules) &&
		m.excludeExpr == c.ExcludeModulesRegex && slices.Equal(m.excludeList, c.ExcludeModules) &&
		slices.Equal(m.layersPattern, c.LayersPattern) && slices.Equal(m.layers, c.LayersToTransform) &&
		m.rank.sameKeys(c.RankPattern) && m.alpha.sameKeys(c.AlphaPattern)
}

// matchers returns the compiled form of c, from its cache when c was made
// by ParseConfig and its fields have not changed since.
func (c *Config) matchers() (*matchers, error) {
	if c.cache == nil {
		return c.compile()
	}
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	if m := c.cache.m; m != nil && m.fresh(c) {
		return m, nil
	}
	m, err := c.compile()
	if err != nil {
		return nil, err
	}
	c.cache.m = m
	return m, nil
}

// defaultLayerPattern finds the layer index where layers_pattern is not
// given, as PEFT does: the first number that is a whole component of the
// name and follows at least two others ("model.layers.3.mlp" gives 3).
const defaultLayerPattern = `^.*?\.[^.]*\.([0-9]+)\.`

func (c *Config) compile() (*matchers, error) {
	m := &matchers{
		targetList: slices.Clone(c.TargetModules), targetExpr: c.TargetModulesRegex,
		excludeList: slices.Clone(c.ExcludeModules), excludeExpr: c.ExcludeModulesRegex,
		layersPattern: slices.Clone(c.LayersPattern), layers: slices.Clone(c.LayersToTransform),
	}
	var err error
	if strings.EqualFold(c.TargetModulesRegex, AllLinear) {
		m.allLinear = true
	} else if m.target, err = compileNameSet("target_modules", c.TargetModules, c.TargetModulesRegex); err != nil {
		return nil, err
	}
	if c.ExcludeModulesRegex != "" || len(c.ExcludeModules) > 0 {
		if m.exclude, err = compileNameSet("exclude_modules", c.ExcludeModules, c.ExcludeModulesRegex); err != nil {
			return nil, err
		}
	}
	if len(c.LayersToTransform) > 0 {
		m.layerSet = make(map[int]bool, len(c.LayersToTransform))
		for _, l := range c.LayersToTransform {
			m.layerSet[l] = true
		}
		exprs := []string{defaultLayerPattern}
		if len(c.LayersPattern) > 0 {
			exprs = exprs[:0]
			for _, p := range c.LayersPattern {
				exprs = append(exprs, `^.*?\.(?:`+p+`)\.([0-9]+)\.`)
			}
		}
		for i, e := range exprs {
			re, err := regexp.Compile(e)
			if err != nil {
				return nil, fmt.Errorf("peft: layers_pattern %s is not a regular expression this package can use: %v: %w", quote(c.LayersPattern[i]), err, ErrUnsupported)
			}
			m.layerPatterns = append(m.layerPatterns, re)
		}
	}
	if m.rank, err = compilePattern(c.RankPattern); err != nil {
		return nil, fmt.Errorf("peft: rank_pattern: %w", err)
	}
	if m.alpha, err = compilePattern(c.AlphaPattern); err != nil {
		return nil, fmt.Errorf("peft: alpha_pattern: %w", err)
	}
	return m, nil
}

// selects reports whether the module called name is a LoRA layer of the
// configuration; embedding says its pair is lora_embedding_A and
// lora_embedding_B.
func (m *matchers) selects(name string, embedding bool) bool {
	if m.exclude != nil && m.exclude.match(name) {
		return false
	}
	if m.allLinear {
		return !embedding
	}
	if !m.target.match(name) {
		return false
	}
	// layers_to_transform restricts the names selected by suffix, not
	// those listed whole nor those a regular expression selects.
	if m.layerPatterns == nil || m.target.re != nil || m.target.exact(name) {
		return true
	}
	for _, re := range m.layerPatterns {
		if sub := re.FindStringSubmatch(name); sub != nil {
			i, err := strconv.Atoi(sub[1])
			return err == nil && m.layerSet[i]
		}
	}
	return false
}

// quote quotes s for an error message, cut to maxExcerpt bytes.
func quote(s string) string { return strconv.Quote(excerpt(s)) }

// maxExcerpt bounds the bytes of a name or value that an error message
// quotes.
const maxExcerpt = 256

// excerpt returns s, or its first maxExcerpt bytes (whole runes) followed by
// a note of its length.
func excerpt(s string) string {
	if len(s) <= maxExcerpt {
		return s
	}
	end := maxExcerpt
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}
