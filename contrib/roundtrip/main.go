// Command roundtrip measures the FUSE request round trip over /dev/fuse
// and over io_uring: a go-fuse loopback (the patched go-fuse of
// third_party/go-fuse) is mounted twice in this process, once each way
// (the fuse module parameter enable_uring is set to Y for the second
// mount and restored), and tight loops of getxattr (ENODATA) and stat
// (attribute timeout 0: one GETATTR each) on one file alternate between
// the two mounts run by run. Needs root and Linux 6.14+.
//
//	go run ./contrib/roundtrip -runs 7 -n 20000
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

const param = "/sys/module/fuse/parameters/enable_uring"

func mount(orig string, uring bool, depth int) (*fuse.Server, string) {
	mnt, _ := os.MkdirTemp("", "rt-mnt")
	root, err := fs.NewLoopbackRoot(orig)
	if err != nil {
		log.Fatal(err)
	}
	zero := time.Duration(0)
	hour := time.Hour
	opts := &fs.Options{EntryTimeout: &hour, AttrTimeout: &zero}
	opts.DirectMount = true
	opts.EnableIoUring = uring
	opts.IoUringQueueDepth = depth
	srv, err := fs.Mount(mnt, root, opts)
	if err != nil {
		log.Fatal(err)
	}
	if uring && srv.IoUringError() != nil {
		log.Fatal(srv.IoUringError())
	}
	return srv, mnt
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func main() {
	runs := flag.Int("runs", 7, "runs per call and transport")
	n := flag.Int("n", 20000, "calls per run")
	depth := flag.Int("depth", 2, "io_uring entries per CPU queue")
	flag.Parse()
	orig, _ := os.MkdirTemp("", "rt-orig")
	defer os.RemoveAll(orig)
	os.WriteFile(filepath.Join(orig, "f"), []byte("x"), 0644)

	old, _ := os.ReadFile(param)
	os.WriteFile(param, []byte("N"), 0)
	devSrv, devMnt := mount(orig, false, 0)
	os.WriteFile(param, []byte("Y"), 0)
	ringSrv, ringMnt := mount(orig, true, *depth)
	os.WriteFile(param, []byte(strings.TrimSpace(string(old))), 0)
	defer func() {
		for _, m := range []struct {
			srv *fuse.Server
			mnt string
		}{{devSrv, devMnt}, {ringSrv, ringMnt}} {
			if err := m.srv.Unmount(); err != nil {
				log.Print(err)
			}
			os.Remove(m.mnt)
		}
	}()

	ops := map[string]func(p string){
		"getxattr": func(p string) {
			var b [16]byte
			syscall.Getxattr(p, "user.none", b[:])
		},
		"stat": func(p string) {
			var st syscall.Stat_t
			syscall.Stat(p, &st)
		},
	}
	res := map[string][]float64{}
	for r := 0; r < *runs; r++ {
		for _, op := range []string{"getxattr", "stat"} {
			for _, m := range []struct{ name, mnt string }{{"devfuse", devMnt}, {"uring", ringMnt}} {
				p := filepath.Join(m.mnt, "f")
				f := ops[op]
				f(p)
				t0 := time.Now()
				for i := 0; i < *n; i++ {
					f(p)
				}
				us := float64(time.Since(t0).Nanoseconds()) / float64(*n) / 1000
				k := op + " " + m.name
				res[k] = append(res[k], us)
			}
		}
	}
	for _, op := range []string{"getxattr", "stat"} {
		for _, m := range []string{"devfuse", "uring"} {
			k := op + " " + m
			x := res[k]
			s := append([]float64(nil), x...)
			sort.Float64s(s)
			fmt.Printf("%-18s median %6.2f us/op  min %6.2f max %6.2f  runs %v\n", k, median(x), s[0], s[len(s)-1], fmtList(x))
		}
	}
	fmt.Println("ring requests:", ringSrv.IoUringRequests(), " devfuse-mount ring requests:", devSrv.IoUringRequests())
}

func fmtList(x []float64) string {
	var p []string
	for _, v := range x {
		p = append(p, fmt.Sprintf("%.1f", v))
	}
	return strings.Join(p, ",")
}
