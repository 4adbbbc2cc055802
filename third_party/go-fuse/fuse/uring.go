// Copyright 2026 the Go-FUSE Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package fuse

import (
	"errors"
	"sync/atomic"
)

// ioUring is the server's FUSE-over-io-uring state. It is set up in
// NewServer, right after INIT, and its workers start serving when
// Serve is called.
type ioUring struct {
	// err says why the ring transport is not in use; nil when it is.
	err error

	// active is set once every queue has its entries registered.
	active bool

	// start is closed by Serve to let the ring workers process
	// requests; abort tells them to quit instead.
	start chan struct{}
	abort bool

	// requests counts the requests that arrived through the ring.
	requests atomic.Uint64
}

// errIoUringNotRequested is what IoUringError returns when
// MountOptions.EnableIoUring was not set.
var errIoUringNotRequested = errors.New("io_uring not requested (MountOptions.EnableIoUring is false)")

// IoUringError returns nil when the server receives requests through
// FUSE-over-io-uring, and otherwise the reason it does not: it was
// not requested, the kernel did not offer it, or setting up the
// rings failed.
func (ms *Server) IoUringError() error {
	if !ms.opts.EnableIoUring {
		return errIoUringNotRequested
	}
	if ms.uring.err != nil {
		return ms.uring.err
	}
	if !ms.uring.active {
		return errors.New("io_uring rings not registered")
	}
	return nil
}

// IoUringRequests returns how many requests the server has received
// through the io_uring rings. Requests that always use /dev/fuse
// (INIT, FORGET, INTERRUPT, and requests queued before the rings were
// ready) are not counted.
func (ms *Server) IoUringRequests() uint64 {
	return ms.uring.requests.Load()
}

// serveIoUring lets the ring workers, if any, process requests.
func (ms *Server) serveIoUring() {
	if ms.uring.start != nil {
		close(ms.uring.start)
	}
}
