package main

import (
	"fmt"
	"slices"
)

// A workload is one row of the results table.
type workload struct {
	id     string
	group  string
	title  string // table label; %s is replaced by the size description
	unit   string
	higher bool // higher values are better (throughput); else lower (time)
	writes bool // needs a writable configuration
}

// Units.
const (
	unitMiBs = "MiB/s"
	unitIOPS = "IOPS"
	unitOps  = "ops/s"
	unitSec  = "s"
)

// Groups, in the order they run within a run.
const (
	groupSeqWrite = "seqwrite"
	groupSeqRead  = "seqread"
	groupRandom   = "random"
	groupMeta     = "meta"
	groupTree     = "tree"
	groupUsage    = "usage"   // separate table
	groupMemory   = "memory"  // separate table
	groupCluster  = "cluster" // separate table
)

var allWorkloads = []workload{
	{"seqwrite-new", groupSeqWrite, "seq write {size} + fsync, new file, 1 MiB blocks", unitMiBs, true, true},
	{"seqwrite-overwrite", groupSeqWrite, "seq overwrite {size} + fsync, 1 MiB blocks", unitMiBs, true, true},
	{"seqread-cold", groupSeqRead, "seq read {size}, cold (caches dropped, fresh open)", unitMiBs, true, false},
	{"seqread-warm", groupSeqRead, "seq read {size}, warm (second open)", unitMiBs, true, false},
	{"randread-hit", groupRandom, "rand 4k read {rand}, page cache hit", unitIOPS, true, false},
	{"randread-miss", groupRandom, "rand 4k read {rand}, cache miss (O_DIRECT)", unitIOPS, true, false},
	{"randwrite", groupRandom, "rand 4k write {rand}, buffered", unitIOPS, true, true},
	{"create", groupMeta, "create {files} small files (1 KiB)", unitOps, true, true},
	{"stat", groupMeta, "stat {files} files (caches dropped)", unitOps, true, false},
	{"negstat", groupMeta, "stat 1000 missing names x20, as 20 python starts (caches dropped)", unitOps, true, false},
	{"unlink", groupMeta, "unlink {files} files", unitOps, true, true},
	{"untar", groupTree, "untar {tree}, tar -xf --no-same-owner (caches dropped)", unitSec, false, true},
	{"untar-chown", groupTree, "untar {tree} as root with chown, tar -xf (caches dropped)", unitSec, false, true},
	{"find", groupTree, "find over the tree (caches dropped)", unitSec, false, false},
	{"du", groupTree, "du -s over the tree (caches dropped)", unitSec, false, false},
	{"statstorm", groupTree, "stat storm: lstat every entry x{passes} (caches dropped)", unitSec, false, false},
	{"rm", groupTree, "rm -rf the tree (caches dropped)", unitSec, false, true},
	{"usage-query", groupUsage, "usage query vs du -sb", "", false, false},
	{"memory", groupMemory, "vfolder daemon RSS", "", false, false},
	{"cluster-write", groupCluster, "three vfolderd nodes writing one scope", unitMiBs, true, true},
}

// groupOrder is the order groups run in.
var groupOrder = []string{groupSeqWrite, groupSeqRead, groupRandom, groupMeta, groupTree, groupUsage, groupMemory, groupCluster}

func workloadByID(id string) (workload, bool) {
	for _, w := range allWorkloads {
		if w.id == id {
			return w, true
		}
	}
	return workload{}, false
}

func workloadIDs() []string {
	var out []string
	for _, w := range allWorkloads {
		out = append(out, w.id)
	}
	return out
}

func groupNames() []string { return groupOrder }

// selectWorkloads resolves a --workloads value (ids and group names) to
// workload ids in table order.
func selectWorkloads(s string) ([]string, error) {
	all, items := splitList(s)
	want := map[string]bool{}
	for _, it := range items {
		if slices.Contains(groupOrder, it) {
			for _, w := range allWorkloads {
				if w.group == it {
					want[w.id] = true
				}
			}
			continue
		}
		if _, ok := workloadByID(it); !ok {
			return nil, fmt.Errorf("unknown workload %q", it)
		}
		want[it] = true
	}
	var out []string
	for _, w := range allWorkloads {
		if all || want[w.id] {
			out = append(out, w.id)
		}
	}
	return out, nil
}

// selectConfigs resolves a --configs value to configuration names in
// table order; native always comes first (ratios are relative to it).
func selectConfigs(s string) ([]string, error) {
	all, items := splitList(s)
	known := configNames()
	want := map[string]bool{cfgNative: true}
	for _, it := range items {
		if !slices.Contains(known, it) {
			return nil, fmt.Errorf("unknown configuration %q (known: %v)", it, known)
		}
		want[it] = true
	}
	var out []string
	for _, n := range known {
		if all || want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}
