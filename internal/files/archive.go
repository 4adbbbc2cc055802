package files

import (
	"archive/tar"
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// archiver writes one entry of a directory archive.
type archiver interface {
	dir(name string, st *unix.Stat_t) error
	file(name string, st *unix.Stat_t, r io.Reader) error
	symlink(name, target string, st *unix.Stat_t) error
	Close() error
}

// walkArchive writes the tree below dirfd (shown under prefix, "" at the
// top) into a, directory by directory through fds, a batch of names at a
// time. Files are copied by the size fstat gave when they were opened; a
// file that shrinks meanwhile ends the archive with an error. Sockets,
// fifos and devices are left out. skipStaging leaves StagingDir out (the
// folder's root).
// d is the directory (dirfd its descriptor); the caller closes it.
func walkArchive(ctx context.Context, d *os.File, dirfd int, prefix string, a archiver, skipStaging bool) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := d.Readdirnames(listBatch)
		for _, n := range names {
			if skipStaging && n == StagingDir {
				continue
			}
			if err := archiveEntry(ctx, dirfd, n, prefix+n, a); err != nil {
				return err
			}
		}
		if len(names) == 0 || errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fsErr("read directory", "/"+prefix, err)
		}
	}
}

func archiveEntry(ctx context.Context, dirfd int, n, name string, a archiver) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if err == unix.ENOENT {
			return nil
		}
		return fsErr("stat", "/"+name, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := openAt(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return fsErr("open", "/"+name, err)
		}
		d := os.NewFile(uintptr(fd), name)
		defer d.Close()
		if err := a.dir(name+"/", &st); err != nil {
			return err
		}
		return walkArchive(ctx, d, fd, name+"/", a, false)
	case unix.S_IFREG:
		fd, err := openAt(dirfd, n, unix.O_RDONLY, 0)
		if err != nil {
			return fsErr("open", "/"+name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		if err := unix.Fstat(fd, &st); err != nil {
			return fsErr("stat", "/"+name, err)
		}
		return a.file(name, &st, io.LimitReader(f, st.Size))
	case unix.S_IFLNK:
		buf := make([]byte, 4096)
		k, err := unix.Readlinkat(dirfd, n, buf)
		if err != nil {
			return fsErr("readlink", "/"+name, err)
		}
		return a.symlink(name, string(buf[:k]), &st)
	}
	return nil
}

func mtimeOf(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

type tarArchiver struct{ w *tar.Writer }

func (t tarArchiver) hdr(h *tar.Header, st *unix.Stat_t) *tar.Header {
	h.Mode = int64(st.Mode & 0o7777)
	h.ModTime = mtimeOf(st)
	h.Format = tar.FormatPAX
	return h
}

func (t tarArchiver) dir(name string, st *unix.Stat_t) error {
	return t.w.WriteHeader(t.hdr(&tar.Header{Typeflag: tar.TypeDir, Name: name}, st))
}

func (t tarArchiver) file(name string, st *unix.Stat_t, r io.Reader) error {
	if err := t.w.WriteHeader(t.hdr(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: st.Size}, st)); err != nil {
		return err
	}
	n, err := io.Copy(t.w, r)
	if err == nil && n != st.Size {
		err = fmt.Errorf("/%s shrank from %d to %d bytes while it was archived", name, st.Size, n)
	}
	return err
}

func (t tarArchiver) symlink(name, target string, st *unix.Stat_t) error {
	return t.w.WriteHeader(t.hdr(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}, st))
}

func (t tarArchiver) Close() error { return t.w.Close() }

type zipArchiver struct{ w *zip.Writer }

func (z zipArchiver) header(name string, st *unix.Stat_t, mode fs.FileMode) *zip.FileHeader {
	h := &zip.FileHeader{Name: name, Method: zip.Store, Modified: mtimeOf(st)}
	h.SetMode(mode | fs.FileMode(st.Mode&0o777))
	return h
}

func (z zipArchiver) dir(name string, st *unix.Stat_t) error {
	_, err := z.w.CreateHeader(z.header(name, st, fs.ModeDir))
	return err
}

func (z zipArchiver) file(name string, st *unix.Stat_t, r io.Reader) error {
	h := z.header(name, st, 0)
	h.UncompressedSize64 = uint64(st.Size)
	w, err := z.w.CreateHeader(h)
	if err != nil {
		return err
	}
	n, err := io.Copy(w, r)
	if err == nil && n != st.Size {
		err = fmt.Errorf("/%s shrank from %d to %d bytes while it was archived", name, st.Size, n)
	}
	return err
}

func (z zipArchiver) symlink(name, target string, st *unix.Stat_t) error {
	w, err := z.w.CreateHeader(z.header(name, st, fs.ModeSymlink))
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, target)
	return err
}

func (z zipArchiver) Close() error { return z.w.Close() }
