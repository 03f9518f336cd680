// Package tmpfile writes a file beside its final name, for renaming into
// place once everything it belongs with has been written.
package tmpfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write creates a temporary file in dir, named after name, fills it with
// write, syncs it to disk, closes it and makes it readable by all (0644),
// and returns its path. On any error it removes the file and returns "" and
// an error naming dir/name.
func Write(dir, name string, write func(*os.File) error) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	err = write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	return f.Name(), nil
}
