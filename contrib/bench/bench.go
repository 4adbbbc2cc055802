package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Fixture names below <data>/fixtures.
const (
	fxBig  = "big.dat"
	fxRand = "rand.dat"
	fxMeta = "meta"
	fxTree = "tree"
)

// metaFileSize is the size of each small file of the metadata workload.
const metaFileSize = 1024

// prepareFixtures writes, once and on the backing side, what the
// workloads read: the big file, the random I/O file, the small files for
// read-only configurations, the tarball of the source tree, an extracted
// copy of it and the list of its entries.
func (e *env) prepareFixtures(ctx context.Context, want map[string]bool) error {
	fx := filepath.Join(e.data, fixtureDir)
	o := e.opts
	if want["seqwrite-overwrite"] || want["seqread-cold"] || want["seqread-warm"] {
		e.logf("writing %s fixture (%s)", fxBig, humanBytes(o.size))
		if err := writeFixture(ctx, filepath.Join(fx, fxBig), o.size); err != nil {
			return err
		}
	}
	if groupWanted(groupRandom, want) {
		e.logf("writing %s fixture (%s)", fxRand, humanBytes(o.randSize))
		if err := writeFixture(ctx, filepath.Join(fx, fxRand), o.randSize); err != nil {
			return err
		}
	}
	if (want["stat"] || want["negstat"]) && e.anyReadOnly() {
		e.logf("creating %d small files for read-only configurations", o.files)
		dir := filepath.Join(fx, fxMeta)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if _, err := metaOp(opCreate, dir, o.files, metaFileSize); err != nil {
			return err
		}
	}
	if groupWanted(groupTree, want) {
		e.tarball = filepath.Join(e.work, "tree.tar")
		e.logf("tarring %s", o.treeSrc)
		if _, err := timeCmd(ctx, "tar", "-cf", e.tarball, "-C", filepath.Dir(o.treeSrc), filepath.Base(o.treeSrc)); err != nil {
			return err
		}
		dir := filepath.Join(fx, fxTree)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		if _, err := timeCmd(ctx, "tar", untarArgs(e.tarball, dir, false)...); err != nil {
			return err
		}
		var list strings.Builder
		n := 0
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == dir {
				return nil
			}
			rel, _ := filepath.Rel(dir, p)
			if strings.Contains(rel, "\n") {
				return fmt.Errorf("name with a newline in the tree: %q", rel)
			}
			list.WriteString(rel)
			list.WriteByte('\n')
			n++
			return nil
		})
		if err != nil {
			return err
		}
		e.treeList = filepath.Join(e.work, "tree.list")
		if err := os.WriteFile(e.treeList, []byte(list.String()), 0o644); err != nil {
			return err
		}
		e.res.treeEntries = n
		e.res.treeBytes = dirBytes(dir)
	}
	return nil
}

func (e *env) anyReadOnly() bool {
	for _, c := range e.opts.configs {
		if newConfigReadOnly(c) {
			return true
		}
	}
	return false
}

// newConfigReadOnly tells whether a configuration is read-only without
// setting it up.
func newConfigReadOnly(name string) bool {
	if a := ablationByConfig(name); a != nil {
		name = a.base
	}
	return name == cfgVfolderRO || name == cfgVfolderROUring
}

// writeFixture writes size bytes of a non-repeating pattern and fsyncs.
func writeFixture(ctx context.Context, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	buf := pattern(blockSize)
	for done := int64(0); done < size; {
		if ctx.Err() != nil {
			f.Close()
			return ctx.Err()
		}
		n := min(int64(len(buf)), size-done)
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		done += n
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// dirBytes sums the sizes of the regular files below dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func mibs(bytes int64, secs float64) float64 { return float64(bytes) / (1 << 20) / secs }

// runGroup runs one group of workloads once on one configuration.
func (e *env) runGroup(ctx context.Context, g string, t *target, run int, want map[string]bool) error {
	name := t.c.name()
	ro := t.c.readOnly()
	o := e.opts
	fx := filepath.Join(t.path, fixtureDir)
	// measure runs f for workload id if it is wanted and possible here and
	// records the result; only an interruption stops the group.
	measure := func(id string, f func() (float64, error)) error {
		w, _ := workloadByID(id)
		if !want[id] || (ro && w.writes) {
			return nil
		}
		waited, err := e.quiesce(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			e.notef("%s on %s, run %d: did not wait for the FUSE servers: %v", id, name, run+1, err)
		case waited >= 10*time.Millisecond:
			e.logf("%s on %s: waited %v for FUSE requests in flight", id, name, waited.Round(time.Millisecond))
		}
		v, err := f()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.res.add(id, name, run, v, err)
		return nil
	}
	var scratch string
	if !ro {
		// A name per group and run: a FUSE mount may still cache the
		// entry of a scratch directory removed behind its back.
		scratch = filepath.Join(t.path, "scratch-"+name+"-"+strconv.Itoa(run)+"-"+g)
		if err := os.Mkdir(scratch, 0o755); err != nil {
			for _, w := range allWorkloads {
				if w.group == g && want[w.id] {
					e.res.add(w.id, name, run, 0, fmt.Errorf("mkdir scratch: %w", err))
				}
			}
			return nil
		}
		defer os.RemoveAll(e.backing(t, scratch))
	}

	switch g {
	case groupSeqWrite:
		if err := measure("seqwrite-new", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := runWorkerProc(ctx, opSeqWrite, filepath.Join(scratch, "new.dat"), strconv.FormatInt(o.size, 10), "new-fsync")
			os.Remove(e.backing(t, filepath.Join(scratch, "new.dat")))
			return mibs(r.Bytes, r.Seconds), err
		}); err != nil {
			return err
		}
		return measure("seqwrite-overwrite", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := runWorkerProc(ctx, opSeqWrite, filepath.Join(fx, fxBig), strconv.FormatInt(o.size, 10), "overwrite")
			return mibs(r.Bytes, r.Seconds), err
		})

	case groupSeqRead:
		big := filepath.Join(fx, fxBig)
		if err := measure("seqread-cold", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := runWorkerProc(ctx, opRead, big, "1")
			return mibs(r.Bytes, r.Seconds), err
		}); err != nil {
			return err
		}
		return measure("seqread-warm", func() (float64, error) {
			r, err := runWorkerProc(ctx, opRead, big, "2")
			return mibs(r.Bytes, r.Seconds), err
		})

	case groupRandom:
		rf := filepath.Join(fx, fxRand)
		if err := measure("randread-hit", func() (float64, error) {
			return e.randReadHit(ctx, t, rf)
		}); err != nil {
			return err
		}
		if err := measure("randread-miss", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := e.fio(ctx, rf, "randread", true)
			return r.iops, err
		}); err != nil {
			return err
		}
		return measure("randwrite", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := e.fio(ctx, rf, "randwrite", false)
			return r.iops, err
		})

	case groupMeta:
		n := strconv.Itoa(o.files)
		dir := filepath.Join(fx, fxMeta)
		if !ro {
			dir = filepath.Join(scratch, "meta")
			if err := os.Mkdir(dir, 0o755); err != nil {
				return measure("create", func() (float64, error) { return 0, err })
			}
			var cerr error
			if err := measure("create", func() (float64, error) {
				if err := dropCaches(); err != nil {
					return 0, err
				}
				r, err := runWorkerProc(ctx, opCreate, dir, n, strconv.Itoa(metaFileSize))
				cerr = err
				return float64(r.Ops) / r.Seconds, err
			}); err != nil {
				return err
			}
			if !want["create"] {
				_, cerr = runWorkerProc(ctx, opCreate, dir, n, strconv.Itoa(metaFileSize))
			}
			if cerr != nil {
				cerr = fmt.Errorf("create failed: %w", cerr)
				measure("stat", func() (float64, error) { return 0, cerr })
				measure("negstat", func() (float64, error) { return 0, cerr })
				return measure("unlink", func() (float64, error) { return 0, cerr })
			}
		}
		if err := measure("stat", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := runWorkerProc(ctx, opStat, dir, n)
			return float64(r.Ops) / r.Seconds, err
		}); err != nil {
			return err
		}
		if err := measure("negstat", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := runWorkerProc(ctx, opNegStat, dir, strconv.Itoa(negNames), strconv.Itoa(negPasses))
			return float64(r.Ops) / r.Seconds, err
		}); err != nil {
			return err
		}
		return measure("unlink", func() (float64, error) {
			if err := dropCaches(); err != nil {
				return 0, err
			}
			r, err := runWorkerProc(ctx, opUnlink, dir, n)
			return float64(r.Ops) / r.Seconds, err
		})

	case groupTree:
		root := filepath.Join(fx, fxTree)
		if !ro {
			root = filepath.Join(scratch, "tree")
			var uerr error
			if err := os.Mkdir(root, 0o755); err != nil {
				uerr = err
			}
			if err := measure("untar", func() (float64, error) {
				if uerr != nil {
					return 0, uerr
				}
				if err := dropCaches(); err != nil {
					return 0, err
				}
				d, err := timeCmd(ctx, "tar", untarArgs(e.tarball, root, false)...)
				uerr = err
				return d, err
			}); err != nil {
				return err
			}
			if !want["untar"] && uerr == nil {
				_, uerr = timeCmd(ctx, "tar", untarArgs(e.tarball, root, false)...)
			}
			if uerr != nil {
				uerr = fmt.Errorf("untar failed: %w", uerr)
				for _, id := range []string{"find", "du", "statstorm", "rm"} {
					measure(id, func() (float64, error) { return 0, uerr })
				}
				if err := e.untarChown(ctx, t, scratch, measure); err != nil {
					return err
				}
				return ctx.Err()
			}
		}
		cold := func(f func() (float64, error)) func() (float64, error) {
			return func() (float64, error) {
				if err := dropCaches(); err != nil {
					return 0, err
				}
				return f()
			}
		}
		if err := measure("find", cold(func() (float64, error) { return timeCmd(ctx, "find", root) })); err != nil {
			return err
		}
		if err := measure("du", cold(func() (float64, error) { return timeCmd(ctx, "du", "-s", root) })); err != nil {
			return err
		}
		if err := measure("statstorm", cold(func() (float64, error) {
			r, err := runWorkerProc(ctx, opLstat, root, e.treeList, strconv.Itoa(o.statPasses))
			return r.Seconds, err
		})); err != nil {
			return err
		}
		if err := measure("rm", cold(func() (float64, error) { return timeCmd(ctx, "rm", "-rf", root) })); err != nil {
			return err
		}
		if ro {
			return nil
		}
		return e.untarChown(ctx, t, scratch, measure)
	}
	return errors.New("unknown group " + g)
}

// The negstat workload: negNames missing names, each looked up negPasses
// times, as an interpreter's module search asks the directories of its
// path for the same missing names at every start (a python start looks
// for about a thousand). One pass takes well under a second, so the
// repeats land within the kernel's negative entry timeout as they do
// when a script starts the interpreter again and again.
const (
	negNames  = 1000
	negPasses = 20
)

// untarArgs is tar's command line for the untar workloads: extract
// tarball into dir, as root, either with the owners recorded in the
// archive (tar's default for root: one chown per entry) or with
// --no-same-owner (no chown: entries belong to the extracting user).
func untarArgs(tarball, dir string, chown bool) []string {
	a := []string{"-xf", tarball, "-C", dir}
	if !chown {
		a = append(a, "--no-same-owner")
	}
	return a
}

// untarChown measures untar-chown on t: caches dropped, then the tarball
// extracted into a directory of its own below scratch by a plain
// `tar -xf` as root, which chowns every entry to its owner in the
// archive. The extracted tree is then removed through the backing path
// (untimed; the scratch directory's removal would do it too, but the next
// group must not find it in the page cache).
func (e *env) untarChown(ctx context.Context, t *target, scratch string, measure func(string, func() (float64, error)) error) error {
	dir := filepath.Join(scratch, "tree-chown")
	err := measure("untar-chown", func() (float64, error) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return 0, err
		}
		if err := dropCaches(); err != nil {
			return 0, err
		}
		return timeCmd(ctx, "tar", untarArgs(e.tarball, dir, true)...)
	})
	if rerr := os.RemoveAll(e.backing(t, dir)); rerr != nil && err == nil && ctx.Err() == nil {
		e.notef("untar-chown on %s: removing the extracted tree: %v", t.c.name(), rerr)
	}
	return err
}

// randReadHit is one page cache hit run of fio on rf. A process first
// reads the file whole through the configuration and keeps it open until
// fio ends, so that nothing a server does when a file is closed (mergerfs
// with dropcacheonclose drops the backing file's cache) happens before or
// during the run. That process also counts, every holdWatchInterval from
// the warm-up to the end of the run, the file's pages that are in the
// page cache on the client side or on the backing side: if more than
// hitMissAllowance were in neither at any time, fio read some from
// storage and the run did not measure hits (the kernel may reclaim
// cached pages at any time). It is then tried again, up to hitAttempts
// times, and fails.
func (e *env) randReadHit(ctx context.Context, t *target, rf string) (float64, error) {
	var missed []string
	for attempt := 1; ; attempt++ {
		drops0 := dropCount()
		iops, w, err := e.randReadHitOnce(ctx, t, rf)
		if err != nil {
			return 0, err
		}
		drops := dropCount() - drops0
		out := w.Pages - w.Lowest
		if out <= hitMissAllowance(w.Pages) {
			if len(missed) > 0 {
				e.notef("randread-hit on %s: %d attempt(s) repeated: pages of the file were out of the page cache during the run (%s)", t.c.name(), len(missed), strings.Join(missed, ", "))
			}
			return iops, nil
		}
		why := fmt.Sprintf("%d of %d pages at %.0f IOPS", out, w.Pages, iops)
		if drops > 0 {
			why += fmt.Sprintf("; another process dropped the caches %d time(s) meanwhile", drops)
		}
		missed = append(missed, why)
		e.logf("randread-hit on %s: attempt %d: %s; not a hit", t.c.name(), attempt, why)
		if attempt == hitAttempts {
			return 0, fmt.Errorf("not a page cache hit in %d attempts: pages of the file out of the page cache during the run: %s", attempt, strings.Join(missed, ", "))
		}
		if _, err := e.quiesce(ctx); err != nil && ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// randReadHitOnce is one attempt: the IOPS and what the hold worker saw.
func (e *env) randReadHitOnce(ctx context.Context, t *target, rf string) (float64, holdResult, error) {
	h, err := startHold(ctx, rf, e.backing(t, rf), e.opts.fioRuntime)
	if err != nil {
		return 0, holdResult{}, fmt.Errorf("warm-up read: %w", err)
	}
	r, err := e.fio(ctx, rf, "randread", false)
	w, cerr := h.close()
	if err == nil && cerr != nil {
		err = fmt.Errorf("warm-up reader: %w", cerr)
	}
	if err != nil {
		return 0, holdResult{}, err
	}
	return r.iops, w, nil
}

// dropCount is how often the page cache was dropped on this machine
// (drop_caches writes, /proc/vmstat drop_pagecache), -1 if unknown.
func dropCount() int64 {
	b, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "drop_pagecache "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}
