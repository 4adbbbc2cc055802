package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// parentMain checks the command line, creates the work directory and runs
// the harness again in a private mount namespace.
func parentMain(args []string) int {
	o, err := parseOptions(args, os.Stderr)
	if err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 2
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if !isRoot() {
		fmt.Fprintln(os.Stderr, "bench: must run as root (it mounts file systems and drops the page cache)")
		return 1
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: /dev/fuse is missing:", err)
		return 1
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	work, err := os.MkdirTemp(o.dir, "vfolder-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}

	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: read mount namespace:", err)
		os.Remove(work)
		return 1
	}
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Env = append(envWithout(envWithout(envWithout(os.Environ(), roleEnv), workEnv), parentNSEnv),
		roleEnv+"="+roleRun, workEnv+"="+work, parentNSEnv+"="+ns)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// A new mount namespace; Go makes / MS_REC|MS_PRIVATE in the child
	// before exec, and the child checks and does it again.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGTERM}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	code := 0
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: start harness:", err)
		code = 1
	} else {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
	wait:
		for {
			select {
			case s := <-sigs:
				// The child cleans up and exits; pass the signal on
				// (it may have got it from the terminal already).
				_ = cmd.Process.Signal(s)
			case err := <-done:
				var ee *exec.ExitError
				switch {
				case err == nil:
				case errors.As(err, &ee):
					code = ee.ExitCode()
					if code < 0 {
						fmt.Fprintln(os.Stderr, "bench: the harness process died:", ee)
						code = 1
					}
				default:
					fmt.Fprintln(os.Stderr, "bench:", err)
					code = 1
				}
				break wait
			}
		}
	}

	// Nothing may be mounted in this (the host's) namespace.
	if err := checkNoMounts(work, ""); err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED: mounts leaked out of the private namespace:", err)
		return 1
	}
	if err := os.RemoveAll(work); err != nil {
		fmt.Fprintln(os.Stderr, "bench: remove work directory:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
