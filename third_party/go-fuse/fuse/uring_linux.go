// Copyright 2026 the Go-FUSE Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package fuse

// FUSE over io_uring (Linux 6.14+, include/uapi/linux/fuse.h and
// fs/fuse/dev_uring.c).
//
// After INIT has negotiated CAP_OVER_IO_URING, the server registers
// ring entries with the kernel: IORING_OP_URING_CMD commands on the
// /dev/fuse fd, with cmd_op FUSE_IO_URING_CMD_REGISTER and an iovec
// of two buffers, a header buffer (struct fuse_uring_req_header) and
// a payload buffer. There is one queue per possible CPU; a request
// goes to the queue of the CPU its caller runs on. Once every queue
// has an entry, the kernel stops queueing requests for read(2) and
// completes a pending command instead, with the request split over
// the two buffers:
//
//	header.in_out   struct fuse_in_header
//	header.op_in    the opcode's fixed-size argument (may be empty)
//	header.ent      commit_id and payload_sz
//	payload         the remaining arguments (names, WRITE data,
//	                extensions), payload_sz bytes
//
// The reply goes into the same buffers: struct fuse_out_header in
// header.in_out, and all reply arguments back to back in the payload
// (payload_sz says how many bytes). The server hands it back with
// FUSE_IO_URING_CMD_COMMIT_AND_FETCH, which also re-arms the entry
// for the next request, so a request costs one io_uring_enter
// instead of a read and a write.
//
// Each entry has its own small io_uring and its own goroutine, locked
// to an OS thread pinned to the queue's CPU. The kernel completes a
// command through task work on the thread that submitted it, so
// keeping submission and waiting on one dedicated thread keeps the
// wakeup on that thread, and pinning keeps it on the CPU the request
// came from. Requests are processed inline on that thread, so
// IoUringQueueDepth is the concurrency per CPU.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// io_uring ABI (include/uapi/linux/io_uring.h).
	_IORING_SETUP_SQE128      = 1 << 10
	_IORING_FEAT_SINGLE_MMAP  = 1 << 0
	_IORING_ENTER_GETEVENTS   = 1 << 0
	_IORING_OFF_SQ_RING       = 0
	_IORING_OFF_CQ_RING       = 0x8000000
	_IORING_OFF_SQES          = 0x10000000
	_IORING_OP_URING_CMD      = 46
	_IORING_SQE128_SIZE       = 128
	_IORING_CQE_SIZE          = 16
	_IORING_SQE_CMD_OFFSET    = 48
	_IORING_SQE_CMD_OP_OFFSET = 8

	// FUSE-over-io-uring ABI (include/uapi/linux/fuse.h).
	_FUSE_IO_URING_CMD_REGISTER         = 1
	_FUSE_IO_URING_CMD_COMMIT_AND_FETCH = 2
	_FUSE_URING_IN_OUT_HEADER_SZ        = 128
	_FUSE_URING_OP_IN_OUT_SZ            = 128

	// Offsets in struct fuse_uring_req_header.
	ringHdrOpIn  = _FUSE_URING_IN_OUT_HEADER_SZ
	ringHdrEnt   = _FUSE_URING_IN_OUT_HEADER_SZ + _FUSE_URING_OP_IN_OUT_SZ
	ringHdrBytes = ringHdrEnt + int(unsafe.Sizeof(ringEntInOut{}))

	// The payload buffer starts this far into the entry's data
	// mapping. The room before it takes the in header and the op
	// argument, copied there so that the request is contiguous
	// (as read(2) delivers it) without copying the payload.
	ringPayloadOffset = 4096

	defaultIoUringQueueDepth = 4
)

// ringEntInOut is struct fuse_uring_ent_in_out.
type ringEntInOut struct {
	Flags     uint64
	CommitID  uint64
	PayloadSz uint32
	Padding   uint32
	Reserved  uint64
}

// ringCmdReq is struct fuse_uring_cmd_req, the command area of the SQE.
type ringCmdReq struct {
	Flags    uint64
	CommitID uint64
	Qid      uint16
	Padding  [6]uint8
}

type ioSqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioUringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  ioSqringOffsets
	CqOff                                                                  ioCqringOffsets
}

type ioUringCqe struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// ringEntry is one registered FUSE ring entry with its own io_uring.
type ringEntry struct {
	ms     *Server
	qid    int
	fuseFd int

	ringFd  int
	ringMem []byte // SQ and CQ rings (single mmap)
	cqMem   []byte // CQ ring, if not in ringMem
	sqeMem  []byte

	sqHead, sqTail, sqMask, sqArray *uint32
	cqHead, cqTail, cqMask          *uint32
	cqes                            unsafe.Pointer

	hdr     []byte // struct fuse_uring_req_header
	data    []byte // ringPayloadOffset bytes of room, then the payload
	payload []byte
	iov     [2]unix.Iovec

	commitID uint64
}

// possibleCPUs returns the number of possible CPUs, which is the
// number of queues the kernel expects.
func possibleCPUs() (int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("parse %q: %w", b, err)
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil {
				return 0, fmt.Errorf("parse %q: %w", b, err)
			}
		}
		n = max(n, z+1)
	}
	if n == 0 {
		return 0, fmt.Errorf("no possible CPUs in %q", b)
	}
	return n, nil
}

// ringPayloadSize is the payload buffer size the kernel requires:
// max(FUSE_MIN_READ_BUFFER, max_write, max_pages * page size).
func (ms *Server) ringPayloadSize() int {
	page := syscall.Getpagesize()
	maxPages := (ms.opts.MaxWrite-1)/page + 1
	return max(_FUSE_MIN_READ_BUFFER, ms.opts.MaxWrite, maxPages*page)
}

// startIoUring registers ring entries on every queue. It returns
// once all are registered or one failed; in the latter case the
// workers that did register are told to quit.
func (ms *Server) startIoUring() error {
	if ms.negotiatedFlags&CAP_OVER_IO_URING == 0 {
		return errors.New("the kernel did not offer FUSE_OVER_IO_URING (needs Linux 6.14+ and the fuse module parameter enable_uring=Y at mount time)")
	}
	nq, err := possibleCPUs()
	if err != nil {
		return err
	}
	depth := ms.opts.IoUringQueueDepth
	if depth <= 0 {
		depth = defaultIoUringQueueDepth
	}
	var fuseFd int
	if err := ms.fuseFD.withFD(func(fd int) { fuseFd = fd }); err != nil {
		return err
	}
	ms.uring.start = make(chan struct{})
	results := make(chan error, nq*depth)
	for q := 0; q < nq; q++ {
		for i := 0; i < depth; i++ {
			ms.fuseFD.loops.Add(1)
			go ms.ringWorker(q, fuseFd, results)
		}
	}
	var first error
	for i := 0; i < nq*depth; i++ {
		if err := <-results; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		ms.uring.abort = true
		close(ms.uring.start)
		ms.uring.start = nil
		return first
	}
	ms.uring.active = true
	return nil
}

// ringWorker serves one ring entry of queue qid. Its goroutine stays
// locked to its OS thread, which dies with it: the thread carries
// the ring's task context and the CPU affinity.
func (ms *Server) ringWorker(qid int, fuseFd int, ready chan<- error) {
	defer ms.fuseFD.loops.Done()
	runtime.LockOSThread()

	var cpus unix.CPUSet
	cpus.Set(qid)
	// Best effort: a CPU that is possible but offline cannot be
	// pinned to, and the queue still works from anywhere.
	_ = unix.SchedSetaffinity(0, &cpus)

	e, err := newRingEntry(ms, qid, fuseFd)
	if err == nil {
		err = e.register()
	}
	ready <- err
	if err != nil {
		if e != nil {
			e.close()
		}
		return
	}
	<-ms.uring.start
	if !ms.uring.abort {
		e.loop()
	}
	e.close()
}

func newRingEntry(ms *Server, qid, fuseFd int) (e *ringEntry, err error) {
	e = &ringEntry{ms: ms, qid: qid, fuseFd: fuseFd, ringFd: -1}
	defer func() {
		if err != nil {
			e.close()
			e = nil
		}
	}()

	var p ioUringParams
	p.Flags = _IORING_SETUP_SQE128
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return e, fmt.Errorf("io_uring_setup: %w", errno)
	}
	e.ringFd = int(fd)

	sqSize := int(p.SqOff.Array + p.SqEntries*4)
	cqSize := int(p.CqOff.Cqes + p.CqEntries*_IORING_CQE_SIZE)
	if p.Features&_IORING_FEAT_SINGLE_MMAP != 0 {
		sqSize = max(sqSize, cqSize)
	}
	e.ringMem, err = unix.Mmap(e.ringFd, _IORING_OFF_SQ_RING, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return e, fmt.Errorf("mmap SQ ring: %w", err)
	}
	cqMem := e.ringMem
	if p.Features&_IORING_FEAT_SINGLE_MMAP == 0 {
		e.cqMem, err = unix.Mmap(e.ringFd, _IORING_OFF_CQ_RING, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return e, fmt.Errorf("mmap CQ ring: %w", err)
		}
		cqMem = e.cqMem
	}
	e.sqeMem, err = unix.Mmap(e.ringFd, _IORING_OFF_SQES, int(p.SqEntries)*_IORING_SQE128_SIZE, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return e, fmt.Errorf("mmap SQEs: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	e.sqHead = u32(e.ringMem, p.SqOff.Head)
	e.sqTail = u32(e.ringMem, p.SqOff.Tail)
	e.sqMask = u32(e.ringMem, p.SqOff.RingMask)
	e.sqArray = u32(e.ringMem, p.SqOff.Array)
	e.cqHead = u32(cqMem, p.CqOff.Head)
	e.cqTail = u32(cqMem, p.CqOff.Tail)
	e.cqMask = u32(cqMem, p.CqOff.RingMask)
	e.cqes = unsafe.Pointer(&cqMem[p.CqOff.Cqes])

	// The buffers live outside the Go heap: the kernel writes
	// them while no Go code refers to them.
	page := syscall.Getpagesize()
	e.hdr, err = unix.Mmap(-1, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return e, fmt.Errorf("mmap header: %w", err)
	}
	e.data, err = unix.Mmap(-1, 0, ringPayloadOffset+ms.ringPayloadSize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return e, fmt.Errorf("mmap payload: %w", err)
	}
	e.payload = e.data[ringPayloadOffset:]
	e.iov[0].Base = &e.hdr[0]
	e.iov[0].SetLen(ringHdrBytes)
	e.iov[1].Base = &e.payload[0]
	e.iov[1].SetLen(len(e.payload))
	return e, nil
}

func (e *ringEntry) close() {
	for _, m := range [][]byte{e.sqeMem, e.cqMem, e.ringMem, e.hdr, e.data} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	e.sqeMem, e.cqMem, e.ringMem, e.hdr, e.data, e.payload = nil, nil, nil, nil, nil, nil
	if e.ringFd >= 0 {
		unix.Close(e.ringFd)
		e.ringFd = -1
	}
}

// prepCmd fills the next SQE with a FUSE ring command and makes it
// visible to the kernel. Submission happens in enter.
func (e *ringEntry) prepCmd(cmdOp uint32) {
	tail := atomic.LoadUint32(e.sqTail)
	idx := tail & *e.sqMask
	sqe := e.sqeMem[int(idx)*_IORING_SQE128_SIZE:][:_IORING_SQE128_SIZE]
	clear(sqe)
	sqe[0] = _IORING_OP_URING_CMD
	*(*int32)(unsafe.Pointer(&sqe[4])) = int32(e.fuseFd)
	*(*uint32)(unsafe.Pointer(&sqe[_IORING_SQE_CMD_OP_OFFSET])) = cmdOp
	if cmdOp == _FUSE_IO_URING_CMD_REGISTER {
		*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&e.iov[0])))
		*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(e.iov))
	}
	cmd := (*ringCmdReq)(unsafe.Pointer(&sqe[_IORING_SQE_CMD_OFFSET]))
	cmd.Qid = uint16(e.qid)
	if cmdOp == _FUSE_IO_URING_CMD_COMMIT_AND_FETCH {
		cmd.CommitID = e.commitID
	}
	*(*uint32)(unsafe.Add(unsafe.Pointer(e.sqArray), uintptr(idx)*4)) = idx
	atomic.StoreUint32(e.sqTail, tail+1)
}

// enter submits pending SQEs and, if wait is set, waits for a CQE.
func (e *ringEntry) enter(wait bool) syscall.Errno {
	for {
		toSubmit := atomic.LoadUint32(e.sqTail) - atomic.LoadUint32(e.sqHead)
		var minComplete, flags uintptr
		if wait {
			if atomic.LoadUint32(e.cqHead) != atomic.LoadUint32(e.cqTail) && toSubmit == 0 {
				return 0
			}
			minComplete, flags = 1, _IORING_ENTER_GETEVENTS
		}
		if toSubmit == 0 && !wait {
			return 0
		}
		// iov is read by the kernel during submission.
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(e.ringFd), uintptr(toSubmit), minComplete, flags, 0, 0)
		runtime.KeepAlive(&e.iov)
		switch errno {
		case 0:
			if !wait || atomic.LoadUint32(e.cqHead) != atomic.LoadUint32(e.cqTail) {
				return 0
			}
		case syscall.EINTR, syscall.EAGAIN, syscall.EBUSY:
		default:
			return errno
		}
	}
}

// popCqe returns the result of the oldest CQE, if there is one.
func (e *ringEntry) popCqe() (res int32, ok bool) {
	head := atomic.LoadUint32(e.cqHead)
	if head == atomic.LoadUint32(e.cqTail) {
		return 0, false
	}
	cqe := (*ioUringCqe)(unsafe.Add(e.cqes, uintptr(head&*e.cqMask)*_IORING_CQE_SIZE))
	res = cqe.Res
	atomic.StoreUint32(e.cqHead, head+1)
	return res, true
}

// register registers the entry with the kernel. The command stays
// pending until a request arrives; a refusal completes it at once.
func (e *ringEntry) register() error {
	e.prepCmd(_FUSE_IO_URING_CMD_REGISTER)
	if errno := e.enter(false); errno != 0 {
		return fmt.Errorf("io_uring_enter: %w", errno)
	}
	head := atomic.LoadUint32(e.cqHead)
	if head != atomic.LoadUint32(e.cqTail) {
		cqe := (*ioUringCqe)(unsafe.Add(e.cqes, uintptr(head&*e.cqMask)*_IORING_CQE_SIZE))
		if cqe.Res < 0 {
			atomic.StoreUint32(e.cqHead, head+1)
			return fmt.Errorf("FUSE_IO_URING_CMD_REGISTER on queue %d: %w", e.qid, syscall.Errno(-cqe.Res))
		}
		// A request already arrived; loop serves it.
	}
	return nil
}

// loop serves requests until the connection goes away.
func (e *ringEntry) loop() {
	lastCmd := uint32(_FUSE_IO_URING_CMD_REGISTER)
	for {
		if errno := e.enter(true); errno != 0 {
			e.ms.opts.Logger.Printf("io_uring queue %d: io_uring_enter: %v", e.qid, errno)
			return
		}
		res, ok := e.popCqe()
		if !ok {
			continue
		}
		if res < 0 {
			switch errno := syscall.Errno(-res); errno {
			case syscall.EINTR, syscall.EAGAIN:
				e.prepCmd(lastCmd)
				continue
			case syscall.ENOTCONN, syscall.ECONNABORTED, syscall.ENODEV, syscall.ECANCELED:
				// Unmounted or aborted.
				return
			default:
				e.ms.opts.Logger.Printf("io_uring queue %d: ring entry failed: %v", e.qid, errno)
				return
			}
		}
		e.serve()
		lastCmd = _FUSE_IO_URING_CMD_COMMIT_AND_FETCH
		e.prepCmd(lastCmd)
	}
}

// serve processes the request in the entry's buffers and leaves the
// reply there.
func (e *ringEntry) serve() {
	ms := e.ms
	ent := (*ringEntInOut)(unsafe.Pointer(&e.hdr[ringHdrEnt]))
	in := (*InHeader)(unsafe.Pointer(&e.hdr[0]))
	e.commitID = ent.CommitID
	payloadSz := int(ent.PayloadSz)
	inHdrSz := int(unsafe.Sizeof(InHeader{}))
	opSz := int(in.Length) - inHdrSz - payloadSz
	if opSz < 0 || opSz > _FUSE_URING_OP_IN_OUT_SZ || payloadSz > len(e.payload) {
		ms.opts.Logger.Printf("io_uring queue %d: malformed request: len %d payload %d", e.qid, in.Length, payloadSz)
		e.replyError(in.Unique, EIO)
		return
	}
	ms.uring.requests.Add(1)

	// Make the request contiguous in front of the payload.
	start := ringPayloadOffset - opSz - inHdrSz
	copy(e.data[start:], e.hdr[:inHdrSz])
	copy(e.data[start+inHdrSz:], e.hdr[ringHdrOpIn:ringHdrOpIn+opSz])
	input := e.data[start : ringPayloadOffset+payloadSz]

	req := ms.reqPool.Get().(*requestAlloc)
	defer ms.returnRingRequest(req)
	if ms.opts.SingleThreaded {
		ms.requestProcessingMu.Lock()
		defer ms.requestProcessingMu.Unlock()
	}
	req.inputBuf = input

	h, inSize, outSize, outPayloadSize, code := parseRequest(req.inputBuf, &ms.kernelSettings, ms.negotiatedFlags)
	req.request.status = code
	if !code.Ok() && code != ENOSYS {
		ms.opts.Logger.Printf("parseRequest: %v", code)
	}
	if code.Ok() {
		req.request.status = req.splitPayload(inSize, int(h.InputSize))
		if !req.request.status.Ok() {
			ms.opts.Logger.Printf("op %s: bad request extension: %v", h.Name, req.request.status)
		}
	}
	req.outHeaderBuf = req.outHeaderInline[:]
	req.outDataBuf = req.outDataInline[:outSize]
	clear(req.outHeaderBuf)
	clear(req.outDataBuf)
	if outPayloadSize > 0 {
		if payloadSz == 0 && outSize+outPayloadSize <= len(e.payload) {
			// Produce the reply data in place, e.g. READ
			// reads from the backing file straight into the
			// ring buffer. Not when the request has a
			// payload (GETXATTR's name), which it would
			// overwrite.
			req.outPayload = e.payload[outSize : outSize+outPayloadSize]
		} else {
			req.outPayload = ms.buffers.AllocBuffer(uint32(outPayloadSize))
			req.bufferPoolOutputBuf = req.outPayload
		}
	}
	ms.protocolServer.handleRequest(h, &req.request)
	// A ring entry cannot drop a request: it only gets the next
	// one by committing a reply. Requests whose reply is
	// suppressed (an EINTR after the connection died) are
	// committed anyway; the kernel has forgotten them.
	if req.readResult != nil {
		req.outPayload, req.status = req.readResult.Bytes(req.outPayload)
		req.readResult.Done()
		req.readResult = nil
		req.serializeHeader(len(req.outPayload))
	}

	n := copy(e.payload, req.outDataBuf)
	if len(req.outPayload) > 0 {
		if n+len(req.outPayload) > len(e.payload) {
			ms.opts.Logger.Printf("io_uring queue %d: %s reply of %d bytes exceeds the ring buffer", e.qid, h.Name, n+len(req.outPayload))
			e.replyError(in.Unique, EIO)
			return
		}
		if unsafe.SliceData(req.outPayload) != &e.payload[n] {
			copy(e.payload[n:], req.outPayload)
		}
		n += len(req.outPayload)
	}
	copy(e.hdr, req.outHeaderBuf)
	ent.PayloadSz = uint32(n)
}

// replyError leaves an error reply in the entry's buffers.
func (e *ringEntry) replyError(unique uint64, st Status) {
	clear(e.hdr[:sizeOfOutHeader])
	o := (*OutHeader)(unsafe.Pointer(&e.hdr[0]))
	o.Unique = unique
	o.Status = -int32(st)
	o.Length = uint32(sizeOfOutHeader)
	(*ringEntInOut)(unsafe.Pointer(&e.hdr[ringHdrEnt])).PayloadSz = 0
}

// returnRingRequest is returnRequest without the read accounting:
// ring requests live in the entry's buffers.
func (ms *Server) returnRingRequest(req *requestAlloc) {
	if req.bufferPoolOutputBuf != nil {
		ms.buffers.FreeBuffer(req.bufferPoolOutputBuf)
		req.bufferPoolOutputBuf = nil
	}
	if req.interrupted {
		req.interrupted = false
		req.cancel = make(chan struct{})
	}
	req.clear()
	ms.reqPool.Put(req)
}
