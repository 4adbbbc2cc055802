package main

// File verbs: ls, stat, mkdir, mv, rm, upload, download (the file API,
// package internal/files) and "token issue". Uploads speak tus: each file
// is one upload whose URL is kept in a state file under the user's cache
// directory (vfolder/uploads/<key>.json, the key a hash of the folder,
// target path, source path, size and mtime), so rerunning an interrupted
// upload continues from the daemon's offset. Progress bars
// (github.com/schollz/progressbar/v3) go to stderr when it is a terminal.

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/meta"
)

const filesHelp = `REF is a folder id, or a folder name: with --user/--project (its owner) for
root and the admin group, or as it shows in the token user's folders.

People other than root and the admin group use a token an admin issued
("vfolder token issue"), given with --token or VFOLDER_TOKEN.`

func tokenFlag() cli.Flag {
	return &cli.StringFlag{Name: "token", EnvVars: []string{"VFOLDER_TOKEN"}, Usage: "file API `TOKEN` (vfolder token issue)"}
}

func fileFlags(extra ...cli.Flag) []cli.Flag {
	owner := ownerFlags("a folder name of")
	for _, f := range extra {
		if bf, ok := f.(*cli.BoolFlag); ok && bf.Name == "parents" {
			// mkdir -p is --parents; --project keeps its long form.
			owner[1] = &cli.StringFlag{Name: "project", Usage: "a folder name of the project with this UUID", Category: "owner"}
		}
	}
	return append(append(owner, tokenFlag()), extra...)
}

func fileCommands(st *state) []*cli.Command {
	return []*cli.Command{
		{
			Name: "ls", Usage: "list a directory in a folder", ArgsUsage: "REF [PATH]",
			Description: filesHelp, Flags: fileFlags(), Action: st.fileList,
		},
		{
			Name: "stat", Usage: "show one file or directory in a folder", ArgsUsage: "REF PATH",
			Description: filesHelp, Flags: fileFlags(), Action: st.fileStat,
		},
		{
			Name: "mkdir", Usage: "create a directory in a folder", ArgsUsage: "REF PATH",
			Description: filesHelp,
			Flags:       fileFlags(&cli.BoolFlag{Name: "parents", Aliases: []string{"p"}, Usage: "create missing parents; an existing directory is fine"}),
			Action:      st.fileMkdir,
		},
		{
			Name: "mv", Usage: "move or rename inside a folder", ArgsUsage: "REF FROM TO",
			Description: filesHelp,
			Flags:       fileFlags(&cli.BoolFlag{Name: "overwrite", Aliases: []string{"f"}, Usage: "replace an existing TO (needs the right to delete)"}),
			Action:      st.fileMove,
		},
		{
			Name: "rm", Usage: "remove a file or directory in a folder", ArgsUsage: "REF PATH...",
			Description: filesHelp + "\n\nA recursive remove runs in the daemon's background; rm waits for it and shows its progress.",
			Flags:       fileFlags(&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "remove directories and what they hold"}),
			Action:      st.fileRemove,
		},
		{
			Name: "upload", Usage: "upload files and directories into a folder (resumable)", ArgsUsage: "REF LOCAL...",
			Description: filesHelp + "\n\nEach LOCAL goes to --to (default the folder's root) under its base name; a directory\n" +
				"uploads as a tree. Rerunning an interrupted upload continues where it stopped.",
			Flags: fileFlags(
				&cli.StringFlag{Name: "to", Usage: "target directory `PATH` in the folder", Value: "/"},
				&cli.BoolFlag{Name: "overwrite", Aliases: []string{"f"}, Usage: "replace existing files (needs the right to delete)"},
				&cli.BoolFlag{Name: "no-progress", Usage: "no progress bar"},
			),
			Action: st.fileUpload,
		},
		{
			Name: "download", Usage: "download files and directories from a folder", ArgsUsage: "REF REMOTE...",
			Description: filesHelp + "\n\nA file lands in --out under its base name; a directory is extracted there from a tar\n" +
				"stream (or saved as REMOTE.tar / .zip with --archive).",
			Flags: fileFlags(
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "local `DIR`", Value: "."},
				&cli.StringFlag{Name: "archive", Usage: "save directories as a tar or zip file instead of extracting them"},
				&cli.BoolFlag{Name: "no-progress", Usage: "no progress bar"},
			),
			Action: st.fileDownload,
		},
		{
			Name:  "token",
			Usage: "file API tokens",
			Subcommands: []*cli.Command{{
				Name:  "issue",
				Usage: "issue a token that lets a user use the file API",
				Description: "The token lends at most --perm, and never more than the user's own permission on a\n" +
					"folder at the time of each request. --folder limits it to one folder (an id, a name\n" +
					"with --owner, or a name the user reaches).",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user `UUID`", Required: true},
					&cli.StringFlag{Name: "folder", Usage: "only this folder `REF`"},
					&cli.StringFlag{Name: "owner", Usage: "owner of --folder given by name (user:UUID or project:UUID)"},
					&cli.StringFlag{Name: "perm", Usage: "ro, rw or wd", Value: "rw"},
					&cli.DurationFlag{Name: "ttl", Usage: "lifetime", Value: api.DefaultTokenTTL},
				},
				Action: st.tokenIssue,
			}},
		},
	}
}

// fileClient is the client with the --token of c.
func (st *state) fileClient(c *cli.Context) *api.Client {
	return st.client.WithToken(c.String("token"))
}

// fileRef reads REF and the owner flags.
func fileRef(c *cli.Context) (string, meta.ScopeID, error) {
	owner, _, err := ownerOf(c)
	return c.Args().First(), owner, err
}

// longCtx is ctxOf without the client's request timeout: transfers and
// listings run as long as they take.
func longCtx(c *cli.Context) context.Context { return ctxOf(c) }

func entryLine(e api.FileEntry) string {
	name := e.Name
	switch e.Type {
	case api.FileDir:
		name += "/"
	case api.FileSymlink:
		name += " -> " + e.Target
	}
	return fmt.Sprintf("%s  %-7s %14d  %s  %s", e.Mode, e.Type, e.Size, e.Mtime.Local().Format("2006-01-02 15:04:05"), name)
}

func (st *state) fileList(c *cli.Context) error {
	if err := needArgs(c, 1, 2); err != nil {
		return err
	}
	ref, owner, err := fileRef(c)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(st.stdout)
	_, err = st.fileClient(c).ListFiles(longCtx(c), ref, owner, c.Args().Get(1), func(e api.FileEntry) error {
		if st.json {
			return enc.Encode(e)
		}
		_, err := fmt.Fprintln(st.stdout, entryLine(e))
		return err
	})
	return err
}

func (st *state) fileStat(c *cli.Context) error {
	if err := needArgs(c, 2, 2); err != nil {
		return err
	}
	ref, owner, err := fileRef(c)
	if err != nil {
		return err
	}
	e, err := st.fileClient(c).StatFile(ctxOf(c), ref, owner, c.Args().Get(1))
	if err != nil {
		return err
	}
	return st.output(e, func() error {
		_, err := fmt.Fprintln(st.stdout, entryLine(e))
		return err
	})
}

func (st *state) fileMkdir(c *cli.Context) error {
	if err := needArgs(c, 2, 2); err != nil {
		return err
	}
	ref, owner, err := fileRef(c)
	if err != nil {
		return err
	}
	e, err := st.fileClient(c).Mkdir(ctxOf(c), ref, owner, api.MkdirRequest{Path: c.Args().Get(1), Parents: c.Bool("parents")})
	if err != nil {
		return err
	}
	return st.output(e, func() error { return nil })
}

func (st *state) fileMove(c *cli.Context) error {
	if err := needArgs(c, 3, 3); err != nil {
		return err
	}
	ref, owner, err := fileRef(c)
	if err != nil {
		return err
	}
	e, err := st.fileClient(c).MoveFile(ctxOf(c), ref, owner, api.MoveRequest{From: c.Args().Get(1), To: c.Args().Get(2), Overwrite: c.Bool("overwrite")})
	if err != nil {
		return err
	}
	return st.output(e, func() error { return nil })
}

func (st *state) fileRemove(c *cli.Context) error {
	if err := needArgs(c, 2, -1); err != nil {
		return err
	}
	ref, owner, err := fileRef(c)
	if err != nil {
		return err
	}
	cl := st.fileClient(c)
	var jobs []api.FileJob
	for _, p := range c.Args().Slice()[1:] {
		j, err := cl.DeleteFile(ctxOf(c), ref, owner, api.DeleteRequest{Path: p, Recursive: c.Bool("recursive")})
		if err != nil {
			return err
		}
		if j == nil {
			continue
		}
		done, err := st.waitJob(c, cl, *j)
		jobs = append(jobs, done)
		if err != nil {
			return err
		}
	}
	if st.json {
		if jobs == nil {
			jobs = []api.FileJob{}
		}
		return printJSON(st.stdout, jobs)
	}
	return nil
}

// waitJob polls a background job until it ends, showing its progress.
func (st *state) waitJob(c *cli.Context, cl *api.Client, j api.FileJob) (api.FileJob, error) {
	bar := st.bar(c, -1, "removing "+j.Path, false)
	defer bar.Close()
	for j.State == api.JobRunning {
		select {
		case <-ctxOf(c).Done():
			return j, ctxOf(c).Err()
		case <-time.After(200 * time.Millisecond):
		}
		var err error
		if j, err = cl.FileJob(ctxOf(c), j.ID); err != nil {
			return j, err
		}
		_ = bar.Set64(j.Removed)
	}
	if j.State == api.JobFailed && j.Error != nil {
		return j, fmt.Errorf("removing %s: %w (after %d entries)", j.Path, j.Error, j.Removed)
	}
	return j, nil
}

// bar is a progress bar on stderr when it is a terminal and wanted.
func (st *state) bar(c *cli.Context, max int64, desc string, bytes bool) *progressbar.ProgressBar {
	w := io.Discard
	if f, ok := st.stderr.(*os.File); ok && !c.Bool("no-progress") && !st.json {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			w = f
		}
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	}
	return progressbar.NewOptions64(max, opts...)
}

// uploadItem is one local file and where it goes.
type uploadItem struct {
	local  string
	remote string
	info   fs.FileInfo
}

// UploadResult is what --json prints per uploaded file.
type UploadResult struct {
	Local   string `json:"local"`
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Resumed int64  `json:"resumed_at,omitempty"`
}

func (st *state) fileUpload(c *cli.Context) error {
	if err := needArgs(c, 2, -1); err != nil {
		return err
	}
	ref, owner, err := fileRef(c)
	if err != nil {
		return err
	}
	cl := st.fileClient(c)
	to := c.String("to")
	var items []uploadItem
	var dirs []string
	var total int64
	for _, local := range c.Args().Slice()[1:] {
		fi, err := os.Stat(local)
		if err != nil {
			return err
		}
		base := filepath.Base(filepath.Clean(local))
		if !fi.IsDir() {
			items = append(items, uploadItem{local: local, remote: path.Join(to, base), info: fi})
			total += fi.Size()
			continue
		}
		err = filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(local, p)
			remote := path.Join(to, base, filepath.ToSlash(rel))
			switch {
			case d.IsDir():
				dirs = append(dirs, remote)
			case d.Type().IsRegular():
				info, err := d.Info()
				if err != nil {
					return err
				}
				items = append(items, uploadItem{local: p, remote: remote, info: info})
				total += info.Size()
			default:
				fmt.Fprintf(st.stderr, "vfolder: skipping %s: not a regular file or directory\n", p)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// Directories first, so that empty ones arrive too.
	for _, d := range dirs {
		if _, err := cl.Mkdir(ctxOf(c), ref, owner, api.MkdirRequest{Path: d, Parents: true}); err != nil {
			return err
		}
	}
	bar := st.bar(c, total, "uploading", true)
	defer bar.Close()
	results := []UploadResult{}
	for _, it := range items {
		res, err := st.uploadOne(c, cl, ref, owner, it, bar)
		if err != nil {
			return fmt.Errorf("%s: %w", it.local, err)
		}
		results = append(results, res)
	}
	_ = bar.Finish()
	if st.json {
		return printJSON(st.stdout, results)
	}
	return nil
}

// uploadState is the state file of one upload.
type uploadState struct {
	URL string `json:"url"`
}

func uploadStateFile(ref string, owner meta.ScopeID, it uploadItem, overwrite bool) (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	abs, _ := filepath.Abs(it.local)
	h := sha256.Sum256([]byte(strings.Join([]string{ref, owner.String(), it.remote, abs,
		strconv.FormatInt(it.info.Size(), 10), strconv.FormatInt(it.info.ModTime().UnixNano(), 10), strconv.FormatBool(overwrite)}, "\x00")))
	return filepath.Join(dir, "vfolder", "uploads", hex.EncodeToString(h[:16])+".json"), nil
}

func (st *state) uploadOne(c *cli.Context, cl *api.Client, ref string, owner meta.ScopeID, it uploadItem, bar *progressbar.ProgressBar) (UploadResult, error) {
	ctx := longCtx(c)
	res := UploadResult{Local: it.local, Path: it.remote, Size: it.info.Size()}
	overwrite := c.Bool("overwrite")
	sf, err := uploadStateFile(ref, owner, it, overwrite)
	if err != nil {
		return res, err
	}
	var loc string
	var offset int64
	if b, err := os.ReadFile(sf); err == nil {
		var s uploadState
		if json.Unmarshal(b, &s) == nil && s.URL != "" {
			off, length, err := cl.UploadOffset(ctx, s.URL)
			var ae *api.Error
			switch {
			case err == nil && length == it.info.Size():
				loc, offset = s.URL, off
				res.Resumed = off
			case err == nil, errors.As(err, &ae) && ae.Code == api.CodeNotFound:
				// Gone or another file: start afresh.
			default:
				return res, err
			}
		}
	}
	if loc == "" {
		md := map[string]string{api.UploadMetaFolder: ref, api.UploadMetaPath: it.remote}
		if !owner.IsZero() {
			md[api.UploadMetaOwner] = owner.String()
		}
		if overwrite {
			md[api.UploadMetaOverwrite] = "1"
		}
		md[api.UploadMetaMode] = fmt.Sprintf("%04o", it.info.Mode().Perm())
		loc, err = cl.CreateUpload(ctx, it.info.Size(), md)
		if err != nil {
			return res, err
		}
		if err := os.MkdirAll(filepath.Dir(sf), 0o700); err != nil {
			return res, err
		}
		b, _ := json.Marshal(uploadState{URL: loc})
		if err := os.WriteFile(sf, b, 0o600); err != nil {
			return res, err
		}
	}
	_ = bar.Add64(offset)
	f, err := os.Open(it.local)
	if err != nil {
		return res, err
	}
	defer f.Close()
	for offset < it.info.Size() {
		n := min(it.info.Size()-offset, uploadChunk)
		body := io.TeeReader(io.NewSectionReader(f, offset, n), bar)
		next, err := cl.PatchUpload(ctx, loc, offset, n, body)
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && (ae.Code == api.CodeQuotaExceeded || ae.Code == api.CodeNotFound) {
				os.Remove(sf) // the daemon dropped the upload
			}
			return res, err
		}
		if next <= offset {
			return res, fmt.Errorf("the upload did not advance past offset %d", offset)
		}
		offset = next
	}
	os.Remove(sf)
	return res, nil
}

// uploadChunk is the most one PATCH sends.
const uploadChunk = 256 << 20

// DownloadResult is what --json prints per download.
type DownloadResult struct {
	Remote string `json:"remote"`
	Local  string `json:"local"`
	Bytes  int64  `json:"bytes"`
}

func (st *state) fileDownload(c *cli.Context) error {
	if err := needArgs(c, 2, -1); err != nil {
		return err
	}
	ref, owner, err := fileRef(c)
	if err != nil {
		return err
	}
	archive := c.String("archive")
	if archive != "" && archive != "tar" && archive != "zip" {
		return usagef(c, "--archive is tar or zip, not %q", archive)
	}
	cl := st.fileClient(c)
	out := c.String("out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	results := []DownloadResult{}
	for _, remote := range c.Args().Slice()[1:] {
		e, err := cl.StatFile(ctxOf(c), ref, owner, remote)
		if err != nil {
			return err
		}
		base := path.Base(path.Clean("/" + remote))
		if base == "/" {
			base = ref
		}
		var r DownloadResult
		switch e.Type {
		case api.FileRegular:
			r, err = st.downloadFile(c, cl, ref, owner, remote, filepath.Join(out, base), e.Size)
		case api.FileDir:
			r, err = st.downloadDir(c, cl, ref, owner, remote, out, base, archive)
		default:
			err = fmt.Errorf("%s is a %s: only files and directories download", remote, e.Type)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", remote, err)
		}
		results = append(results, r)
	}
	if st.json {
		return printJSON(st.stdout, results)
	}
	return nil
}

// downloadFile fetches a file into local via local.part, continuing a
// .part an earlier run left with a range request.
func (st *state) downloadFile(c *cli.Context, cl *api.Client, ref string, owner meta.ScopeID, remote, local string, size int64) (DownloadResult, error) {
	res := DownloadResult{Remote: remote, Local: local}
	part := local + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return res, err
	}
	defer f.Close()
	have, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return res, err
	}
	if have > size {
		if err := f.Truncate(0); err != nil {
			return res, err
		}
		have, _ = f.Seek(0, io.SeekStart)
	}
	bar := st.bar(c, size, path.Base(remote), true)
	defer bar.Close()
	_ = bar.Add64(have)
	if have < size {
		rng := ""
		if have > 0 {
			rng = fmt.Sprintf("bytes=%d-", have)
		}
		resp, err := cl.Download(longCtx(c), ref, owner, remote, "", rng)
		if err != nil {
			return res, err
		}
		defer resp.Body.Close()
		if have > 0 && resp.StatusCode != http.StatusPartialContent {
			// The whole file came: start over.
			if err := f.Truncate(0); err != nil {
				return res, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return res, err
			}
			_ = bar.Set64(0)
		}
		if _, err := io.Copy(io.MultiWriter(f, bar), resp.Body); err != nil {
			return res, err
		}
	}
	if err := f.Close(); err != nil {
		return res, err
	}
	if err := os.Rename(part, local); err != nil {
		return res, err
	}
	st2, err := os.Stat(local)
	if err == nil {
		res.Bytes = st2.Size()
	}
	_ = bar.Finish()
	return res, err
}

// downloadDir fetches a directory as a tar stream and extracts it (or
// saves the archive).
func (st *state) downloadDir(c *cli.Context, cl *api.Client, ref string, owner meta.ScopeID, remote, out, base, archive string) (DownloadResult, error) {
	res := DownloadResult{Remote: remote}
	format := archive
	if format == "" {
		format = "tar"
	}
	resp, err := cl.Download(longCtx(c), ref, owner, remote, format, "")
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	bar := st.bar(c, -1, base, true)
	defer bar.Close()
	body := io.TeeReader(resp.Body, bar)
	if archive != "" {
		res.Local = filepath.Join(out, base+"."+archive)
		f, err := os.OpenFile(res.Local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return res, err
		}
		n, err := io.Copy(f, body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		res.Bytes = n
		return res, err
	}
	res.Local = filepath.Join(out, base)
	n, err := extractTar(body, res.Local)
	res.Bytes = n
	return res, err
}

// extractTar extracts a tar stream into dir (created), refusing any name
// that leaves it and never writing through a symlink the archive made.
func extractTar(r io.Reader, dir string) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	tr := tar.NewReader(r)
	links := map[string]bool{}
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("reading the archive: %w", err)
		}
		name := path.Clean(h.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") || name == "." {
			return total, fmt.Errorf("archive entry %q leaves the target directory", h.Name)
		}
		for p := path.Dir(name); p != "."; p = path.Dir(p) {
			if links[p] {
				return total, fmt.Errorf("archive entry %q is below a symlink of the archive", h.Name)
			}
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		mode := fs.FileMode(h.Mode & 0o777)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return total, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return total, err
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, mode)
			if err != nil {
				return total, err
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			total += n
			if err != nil {
				return total, err
			}
			_ = os.Chtimes(target, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return total, err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return total, err
			}
			links[name] = true
		}
	}
}

func (st *state) tokenIssue(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
		return err
	}
	owner := c.String("owner")
	if owner != "" {
		if _, err := meta.ParseScopeID(owner); err != nil {
			return fmt.Errorf("--owner: %w", err)
		}
	}
	ttl := c.Duration("ttl")
	if ttl < time.Second {
		return usagef(c, "--ttl must be at least 1s")
	}
	t, err := st.client.IssueToken(ctxOf(c), api.TokenRequest{
		User: c.String("user"), Folder: c.String("folder"), Owner: owner,
		Perm: meta.Permission(c.String("perm")), TTLSeconds: int64(ttl / time.Second),
	})
	if err != nil {
		return err
	}
	return st.output(t, func() error {
		_, err := fmt.Fprintln(st.stdout, t.Token)
		return err
	})
}
