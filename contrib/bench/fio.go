package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// fioRun is the outcome of one fio job.
type fioRun struct {
	iops float64
	ios  int64 // I/Os done
}

// fio runs one fio job of 4 KiB random I/O on path for the configured
// duration (--time_based). direct selects O_DIRECT (page cache misses);
// buffered reads keep what is cached (--invalidate=0).
func (e *env) fio(ctx context.Context, path, rw string, direct bool) (fioRun, error) {
	args := fioArgs(path, rw, e.opts.randSize, e.opts.fioRuntime.Milliseconds(), direct)
	cmd := exec.CommandContext(ctx, "fio", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fioRun{}, ctx.Err()
		}
		return fioRun{}, fmt.Errorf("fio %s: %v: %s", rw, err, firstLines(stderr.String()+stdout.String(), 3))
	}
	var r fioRun
	var err error
	if r.iops, r.ios, err = parseFio(stdout.Bytes(), rw); err != nil {
		return fioRun{}, err
	}
	return r, nil
}

func fioArgs(path, rw string, size, runtimeMs int64, direct bool) []string {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	args := []string{
		"--name=" + rw,
		"--filename=" + path,
		"--rw=" + rw,
		"--bs=4k",
		"--size=" + strconv.FormatInt(size, 10),
		"--ioengine=psync",
		"--iodepth=1",
		"--numjobs=1",
		"--time_based",
		"--runtime=" + strconv.FormatInt(runtimeMs, 10) + "ms",
		"--randrepeat=0",
		"--norandommap",
		"--allow_file_create=0",
		"--direct=" + b(direct),
		"--invalidate=" + b(direct),
		"--output-format=json",
	}
	if rw == "randread" {
		args = append(args, "--readonly")
	}
	return args
}

// fioOutput is the part of fio's JSON output the harness reads.
type fioOutput struct {
	Jobs []struct {
		Error int `json:"error"`
		Read  struct {
			IOPS    float64 `json:"iops"`
			TotalIO int64   `json:"total_ios"`
		} `json:"read"`
		Write struct {
			IOPS    float64 `json:"iops"`
			TotalIO int64   `json:"total_ios"`
		} `json:"write"`
	} `json:"jobs"`
}

// parseFioIOPS reads the IOPS of the single job from fio's JSON output
// (fio may print warnings before the JSON object).
func parseFioIOPS(out []byte, rw string) (float64, error) {
	iops, _, err := parseFio(out, rw)
	return iops, err
}

// parseFio reads the IOPS and the number of I/Os of the single job.
func parseFio(out []byte, rw string) (float64, int64, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return 0, 0, fmt.Errorf("fio printed no JSON: %q", firstLines(string(out), 3))
	}
	var fo fioOutput
	if err := json.Unmarshal(out[i:], &fo); err != nil {
		return 0, 0, fmt.Errorf("fio JSON: %v", err)
	}
	if len(fo.Jobs) != 1 {
		return 0, 0, fmt.Errorf("fio reported %d jobs, want 1", len(fo.Jobs))
	}
	j := fo.Jobs[0]
	if j.Error != 0 {
		return 0, 0, fmt.Errorf("fio job error %d (%s)", j.Error, syscall.Errno(j.Error))
	}
	iops, n := j.Read.IOPS, j.Read.TotalIO
	if strings.Contains(rw, "write") {
		iops, n = j.Write.IOPS, j.Write.TotalIO
	}
	if n <= 0 || iops <= 0 {
		return 0, 0, errors.New("fio did no I/O")
	}
	return iops, n, nil
}
