// Package tmpfile writes files that come into view by a rename once
// everything they belong with has been written: a file beside its final
// name (Write), or a file under its final name inside a temporary
// directory that is renamed into place as a whole (Create).
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
	err = fill(f, write)
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("writing %s: %w", filepath.Join(dir, name), err)
	}
	return f.Name(), nil
}

// Create creates the file dir/name, which must not exist, with mode 0644
// (less the umask), fills it with write, syncs it to disk and closes it.
// dir is meant to be a temporary directory that is renamed into place once
// every file in it has been written, so an error names the file by name
// alone, as it would be known there. On any error but one creating it,
// Create removes the file and returns an error naming name.
func Create(dir, name string, write func(*os.File) error) error {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := fill(f, write); err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// fill fills f with write, syncs it to disk and closes it, returning the
// first error.
func fill(f *os.File, write func(*os.File) error) error {
	err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
