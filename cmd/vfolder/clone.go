package main

// clone and the waiting side of purge: both start a long operation in
// the daemon and, with --wait, follow the folder's progress (api.Folder
// Progress) until it ends: a progress bar on a terminal (stderr), a line
// every few seconds otherwise.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/units"
)

// pollEvery is how often --wait reads the folder; lineEvery how often a
// progress line is printed without a terminal.
var (
	pollEvery = 250 * time.Millisecond
	lineEvery = 2 * time.Second
)

func cloneCommand(st *state) *cli.Command {
	return &cli.Command{
		Name:      "clone",
		Usage:     "copy a cloneable folder into a new folder",
		ArgsUsage: "REF NEWNAME",
		Description: refHelp + "\n--user/--project is the caller: it owns the copy (without it, REF must be an id\n" +
			"and the copy gets the source's owner). With --user, REF is any folder the user\n" +
			"reaches (their own, a project's, one shared with or invited to them), by the\n" +
			"name they see or by id; with --project, a folder of that project. The copy runs in the\n" +
			"background (status cloning, then ready); its room in the caller's quota scope is\n" +
			"checked and held before anything is copied. --wait follows it to the end.",
		Flags: append(ownerFlags("the caller is"),
			&cli.StringFlag{Name: "volume", Usage: "volume of the copy (default: the source's)"},
			&cli.BoolFlag{Name: "wait", Usage: "wait until the copy is ready, showing its progress"},
		),
		Action: st.clone,
	}
}

func (st *state) clone(c *cli.Context) error {
	ref, owner, err := refArgs(c, 2)
	if err != nil {
		return err
	}
	name := c.Args().Get(1)
	f, err := st.client.CloneFolder(ctxOf(c), ref, owner, api.CloneRequest{Name: name, Volume: c.String("volume")})
	if err != nil {
		return err
	}
	if !c.Bool("wait") {
		return st.outputLine(f, "Cloning into folder %q (%s); 'vfolder info %s' shows its progress.", f.Name, f.ID, f.ID)
	}
	f, err = st.waitOp(c, f, api.OpClone)
	if err != nil {
		return err
	}
	return st.output(f, func() error {
		fmt.Fprintf(st.stdout, "Cloned into folder %q.\n", f.Name)
		return printKV(st.stdout, folderKV(f))
	})
}

// waitPurge follows a purge started by the purge command.
func (st *state) waitPurge(c *cli.Context, f api.Folder) error {
	last, err := st.waitOp(c, f, api.OpPurge)
	if err != nil {
		return err
	}
	last.Status = "delete-complete"
	last.Progress = nil
	return st.outputLine(last, "Purged folder %q (%s): its files are gone and the name can be used again.", f.Name, f.ID)
}

// waitOp polls the folder until the operation ends: a clone when the
// folder is ready, a purge when the folder is gone. It returns the
// folder as last seen.
func (st *state) waitOp(c *cli.Context, f api.Folder, op string) (api.Folder, error) {
	ctx := ctxOf(c)
	show := st.progressShower(f, op)
	defer show.done()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		show.update(f.Progress)
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-tick.C:
		}
		cur, err := st.client.Folder(ctx, f.ID, f.Owner)
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeNotFound {
			if op == api.OpPurge {
				show.finish()
				return f, nil
			}
			return f, fmt.Errorf("the clone into %q (%s) failed and was rolled back: the folder is gone (the daemon's log says why)", f.Name, f.ID)
		}
		if err != nil {
			return f, err
		}
		f = cur
		switch {
		case op == api.OpClone && f.Status != "cloning":
			show.finish()
			return f, nil
		case op == api.OpPurge && f.Status == "delete-error":
			return f, fmt.Errorf("the purge of %q (%s) failed: status %s; purge again to retry (the daemon's log says why)", f.Name, f.ID, f.Status)
		}
	}
}

// shower shows progress: a bar on a terminal, else periodic lines.
type shower struct {
	st   *state
	op   string
	name string
	bar  *progressbar.ProgressBar
	last time.Time
	p    *api.Progress
}

func (st *state) progressShower(f api.Folder, op string) *shower {
	s := &shower{st: st, op: op, name: f.Name}
	if st.json || !isTTY(st.stderr) {
		return s
	}
	desc := "cloning " + f.Name
	max := int64(-1)
	unit := progressbar.OptionShowBytes(true)
	if op == api.OpPurge {
		desc = "purging " + f.Name
		unit = progressbar.OptionSetItsString("entries")
	}
	if f.Progress != nil {
		max = f.Progress.BytesTotal
		if op == api.OpPurge {
			max = f.Progress.FilesTotal
		}
	}
	s.bar = progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(st.stderr),
		progressbar.OptionSetDescription(desc),
		unit,
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	return s
}

func (s *shower) update(p *api.Progress) {
	if p == nil {
		return
	}
	s.p = p
	if s.bar != nil {
		if s.op == api.OpPurge {
			s.bar.ChangeMax64(p.FilesTotal)
			_ = s.bar.Set64(p.FilesDone)
		} else {
			s.bar.ChangeMax64(p.BytesTotal)
			s.bar.Describe(fmt.Sprintf("cloning %s (%d/%d files)", s.name, p.FilesDone, p.FilesTotal))
			_ = s.bar.Set64(p.BytesDone)
		}
		return
	}
	if s.st.json || time.Since(s.last) < lineEvery {
		return
	}
	s.last = time.Now()
	fmt.Fprintln(s.st.stderr, progressText(*p))
}

// finish shows the end of the operation.
func (s *shower) finish() {
	if s.bar != nil {
		_ = s.bar.Finish()
		return
	}
	if s.p != nil && !s.st.json {
		p := *s.p
		p.BytesDone, p.FilesDone = p.BytesTotal, p.FilesTotal
		fmt.Fprintln(s.st.stderr, progressText(p))
	}
}

func (s *shower) done() {
	if s.bar != nil {
		_ = s.bar.Exit()
	}
}

// progressText is one line of progress, as info and --wait print it.
func progressText(p api.Progress) string {
	switch p.Op {
	case api.OpPurge:
		return fmt.Sprintf("purge: %d of %d entries removed, since %s", p.FilesDone, p.FilesTotal, fmtTime(p.StartedAt))
	default:
		pct := 100.0
		if p.BytesTotal > 0 {
			pct = 100 * float64(p.BytesDone) / float64(p.BytesTotal)
		}
		return fmt.Sprintf("%s: %d of %d files, %s of %s (%.0f%%), since %s", p.Op, p.FilesDone, p.FilesTotal,
			units.FormatSize(p.BytesDone), units.FormatSize(p.BytesTotal), pct, fmtTime(p.StartedAt))
	}
}

// isTTY reports whether w is a terminal.
func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
