package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/golora/lora/internal/tmpfile"
	"github.com/golora/lora/peft"
)

// writeOutput writes the output of plans into dir, with the rewritten index
// of a sharded model and a copy of each of the side files (but for
// config.json when q has one to write instead), reporting progress on
// stderr. It returns the number of files written and the bytes of the
// shards.
func writeOutput(dir string, m *model, q *quantized, plans []*shardPlan, sides []string, stderr io.Writer) (files int, total int64, err error) {
	tensors := 0
	for _, p := range plans {
		total += p.size
		tensors += len(p.jobs)
	}
	prog := newProgress(stderr, tensors, total)
	w := newWriter()
	w.files = m.files()
	defer w.close()
	for _, p := range plans {
		if err := w.writeShard(dir, p, prog); err != nil {
			return 0, 0, err
		}
		files++
		shardWritten()
	}
	if m.index != nil {
		data, err := rewriteIndex(m.index, plans)
		if err != nil {
			return 0, 0, err
		}
		if err := writeFile(dir, m.indexFile, data); err != nil {
			return 0, 0, err
		}
		files++
	}
	for _, s := range sides {
		if q != nil && q.config != nil && filepath.Base(s) == "config.json" {
			if err := writeFile(dir, "config.json", q.config); err != nil {
				return 0, 0, err
			}
			files++
			continue
		}
		if err := tmpfile.Create(dir, filepath.Base(s), func(f *os.File) error {
			src, err := os.Open(s)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(f, src)
			return err
		}); err != nil {
			return 0, 0, err
		}
		files++
	}
	prog.finish()
	return files, total, nil
}

// shardWritten runs after each output shard is written: a hook for the
// tests.
var shardWritten = func() {}

// writeFile writes data into the file called name in dir.
func writeFile(dir, name string, data []byte) error {
	return tmpfile.Create(dir, name, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// rewriteIndex returns the index with metadata.total_size set to the bytes
// of tensor data of the output, the tensors left out taken out of
// weight_map and those its shards hold but it did not list put in, the
// rest as it was, written as transformers writes it: keys sorted, indented
// by two spaces.
func rewriteIndex(ix *index, plans []*shardPlan) ([]byte, error) {
	var total int64
	var dropped []string
	added := map[string]string{}
	for _, p := range plans {
		for _, j := range p.jobs {
			total += j.out.Length
			if _, ok := ix.weightMap[j.out.Name]; !ok {
				added[j.out.Name] = p.sh.name
			}
		}
		dropped = append(dropped, p.dropped...)
	}
	meta := maps.Clone(ix.metadata)
	if meta == nil {
		meta = map[string]json.RawMessage{}
	}
	meta["total_size"] = json.RawMessage(fmt.Sprint(total))
	top := maps.Clone(ix.top)
	mb, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	top["metadata"] = mb
	if len(dropped) > 0 || len(added) > 0 {
		wm := maps.Clone(ix.weightMap)
		maps.Copy(wm, added)
		for _, name := range dropped {
			delete(wm, name)
		}
		if top["weight_map"], err = json.Marshal(wm); err != nil {
			return nil, err
		}
	}
	flat, err := json.Marshal(top) // map keys sorted
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, flat, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// writer streams tensors from base shards into output files. A producer
// goroutine reads, converts and merges tensors into buffers while the
// calling goroutine writes the previous ones: two buffers (each as large as
// a block of a merge, a copy step or a conversion step) circulate between
// them, so that reading and arithmetic overlap writing with at most two
// blocks in flight, and memory does not grow with the size of a tensor.
type writer struct {
	files   peft.Shards  // of the base model, to read its 4-bit weights
	free    chan *buffer // buffers not in flight
	raw     []byte       // the producer's scratch: bytes read
	vals    []float32    // the producer's scratch: values
	exempt  []int        // the producer's scratch: non-finite elements of the base
	saved   []float32    // the producer's scratch: their values
	saved16 []uint16     // the producer's scratch: their 16-bit patterns
	blocks  blockCache   // the producer's matrices for merges, for reuse
}

// buffer is memory for one chunk of output, kept as []float32 so that its
// bytes are aligned for float32 data.
type buffer struct{ f []float32 }

// floats returns the first n values of b, growing it as needed.
func (b *buffer) floats(n int) []float32 {
	if cap(b.f) < n {
		b.f = make([]float32, n)
	}
	return b.f[:n]
}

// halves returns the first n 16-bit elements of b, growing it as needed:
// the memory of b.bytes(2n).
func (b *buffer) halves(n int) []uint16 {
	f := b.floats((n + 1) / 2)
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(f))), n)
}

// bytes returns the first n bytes of b, growing it as needed.
func (b *buffer) bytes(n int) []byte {
	words := (n + 3) / 4
	return peft.Float32Bytes(b.floats(words))[:n]
}

// chunk is bytes to write, and the buffer to give back once they are.
type chunk struct {
	buf  *buffer // nil for bytes the adapter holds
	data []byte
	last bool // the tensor's last chunk
}

// newWriter returns a writer with its two buffers.
func newWriter() *writer {
	w := &writer{free: make(chan *buffer, 2)}
	w.free <- &buffer{}
	w.free <- &buffer{}
	return w
}

// close frees the matrices the writer keeps for merges.
func (w *writer) close() { w.blocks.free() }

// grow returns s resliced to n elements, or a new slice of n elements
// where s has too little capacity; its elements are not cleared.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// writeShard writes the output shard of p into dir.
func (w *writer) writeShard(dir string, p *shardPlan, prog *progress) error {
	return tmpfile.Create(dir, p.sh.name, func(f *os.File) error {
		chunks := make(chan chunk, 1)
		stop := make(chan struct{})
		var perr error
		go func() {
			defer close(chunks)
			perr = w.produce(p, chunks, stop)
		}()
		bw := bufio.NewWriterSize(f, 1<<20)
		_, werr := bw.Write(p.header)
		written := int64(len(p.header))
		prog.add(0, written)
		fl := flusher{f: f}
		defer fl.wait()
		for c := range chunks {
			if werr == nil {
				if _, werr = bw.Write(c.data); werr != nil {
					close(stop)
				}
				fl.wrote(int64(len(c.data)))
			}
			if c.buf != nil {
				w.free <- c.buf
			}
			written += int64(len(c.data))
			tensors := 0
			if c.last {
				tensors = 1
			}
			prog.add(tensors, int64(len(c.data)))
		}
		if werr != nil {
			return werr
		}
		if perr != nil {
			return perr
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := fl.wait(); err != nil {
			return err
		}
		if written != p.size {
			return fmt.Errorf("wrote %d bytes, planned %d", written, p.size)
		}
		return nil
	})
}

// flusher has the data written so far go to disk while more is written,
// one Sync at a time, so that the Sync before the rename finds little left
// to do and the disk works while the merge computes.
type flusher struct {
	f     *os.File
	since int64
	busy  atomic.Bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

func (fl *flusher) wrote(n int64) {
	fl.since += n
	if fl.since < flushEvery || fl.busy.Load() {
		return
	}
	fl.since = 0
	fl.busy.Store(true)
	fl.wg.Add(1)
	go func() {
		defer fl.wg.Done()
		if err := fl.f.Sync(); err != nil {
			fl.mu.Lock()
			fl.err = err
			fl.mu.Unlock()
		}
		fl.busy.Store(false)
	}()
}

// wait waits for the Sync in flight and returns the first error.
func (fl *flusher) wait() error {
	fl.wg.Wait()
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.err
}
