package meta_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"

	"github.com/vfolder/vfolder/meta"
	"github.com/vfolder/vfolder/meta/metatest"
)

// Helper modes of the test binary, selected by environment variables: the
// crash test and the lock test run a second process that opens the same
// database.
const (
	envHelper = "VFOLDER_META_TEST_HELPER" // "crash" or "hold"
	envDir    = "VFOLDER_META_TEST_DIR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envHelper) {
	case "":
		os.Exit(m.Run())
	case "crash":
		os.Exit(crashHelper(os.Getenv(envDir)))
	case "hold":
		os.Exit(holdHelper(os.Getenv(envDir)))
	default:
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", os.Getenv(envHelper))
		os.Exit(2)
	}
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

func openBadger(t *testing.T, dir string) *meta.Badger {
	t.Helper()
	b, err := meta.OpenBadger(dir, testLogger(t))
	if err != nil {
		t.Fatalf("OpenBadger(%s): %v", dir, err)
	}
	return b
}

func TestBadgerStore(t *testing.T) {
	metatest.RunStoreSuite(t, func(t *testing.T) meta.Store { return openBadger(t, t.TempDir()) })
}

func TestBadgerPersistence(t *testing.T) {
	metatest.RunPersistenceSuite(t, func(t *testing.T, dir string) meta.Store { return openBadger(t, dir) })
}

func TestBadgerLockedInProcess(t *testing.T) {
	dir := t.TempDir()
	b := openBadger(t, dir)
	_, err := meta.OpenBadger(dir, testLogger(t))
	if !errors.Is(err, meta.ErrLocked) {
		t.Fatalf("second OpenBadger: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory %s", err, dir)
	}
	// The first store still works, and once it is closed the directory can
	// be opened again.
	ctx := t.Context()
	if err := b.CreateFolder(ctx, metatest.NewFolder(metatest.User(1), "v", "x"), 0); err != nil {
		t.Fatalf("CreateFolder on the first store: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := openBadger(t, dir)
	defer b2.Close()
	if _, err := b2.FolderByName(ctx, metatest.User(1), "x"); err != nil {
		t.Errorf("folder lost across the failed open: %v", err)
	}
}

func TestBadgerLockedByOtherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=hold", envDir+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper did not get ready: %q, %v; stderr: %s", line, err, stderr.String())
	}

	_, err = meta.OpenBadger(dir, testLogger(t))
	if !errors.Is(err, meta.ErrLocked) {
		t.Fatalf("OpenBadger while another process holds %s: %v, want ErrLocked", dir, err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory %s", err, dir)
	}
	if want := fmt.Sprint("pid ", cmd.Process.Pid); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the holder (%s)", err, want)
	}

	stdin.Close() // the helper closes its store and exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v; stderr: %s", err, stderr.String())
	}
	b := openBadger(t, dir)
	defer b.Close()
	if _, err := b.FolderByName(t.Context(), metatest.User(1), "held"); err != nil {
		t.Errorf("the helper's folder is missing: %v", err)
	}
}

// holdHelper opens dir, creates a folder, says "ready" and keeps the store
// open until its stdin is closed.
func holdHelper(dir string) int {
	b, err := meta.OpenBadger(dir, zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := b.CreateFolder(context.Background(), metatest.NewFolder(metatest.User(1), "v", "held"), 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := b.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// setRaw writes keys straight into a closed store's database.
func setRaw(t *testing.T, dir string, kv map[string]string) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		for k, v := range kv {
			if err := txn.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadgerSchemaVersion(t *testing.T) {
	dir := t.TempDir()
	b := openBadger(t, dir)
	err := b.DB().View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte("m/schema"))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if string(v) != fmt.Sprint(meta.BadgerSchemaVersion) {
				return fmt.Errorf("schema key is %q, want %d", v, meta.BadgerSchemaVersion)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("schema version key: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	setRaw(t, dir, map[string]string{"m/schema": fmt.Sprint(meta.BadgerSchemaVersion + 1)})
	_, err = meta.OpenBadger(dir, testLogger(t))
	if !errors.Is(err, meta.ErrSchemaTooNew) {
		t.Fatalf("OpenBadger of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{dir, fmt.Sprint("version ", meta.BadgerSchemaVersion+1)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The refused open released the directory.
	setRaw(t, dir, map[string]string{"m/schema": "garbage"})
	_, err = meta.OpenBadger(dir, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "schema") {
		t.Fatalf("OpenBadger with a garbage schema version: %v, want an error about the schema", err)
	}
	setRaw(t, dir, map[string]string{"m/schema": fmt.Sprint(meta.BadgerSchemaVersion)})
	openBadger(t, dir).Close()
}

// TestBadgerEmptyFileAfterCrash recreates what a SIGKILL right after badger
// created a memtable or value log file leaves behind: an empty file. The
// store must still open, with its data.
func TestBadgerEmptyFileAfterCrash(t *testing.T) {
	for _, name := range []string{"00042.mem", "000042.vlog"} {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			b := openBadger(t, dir)
			f := metatest.NewFolder(metatest.User(1), "v", "before")
			if err := b.CreateFolder(ctx, f, 0); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				b = openBadger(t, dir)
				if _, err := b.FolderByName(ctx, metatest.User(1), "before"); err != nil {
					t.Errorf("round %d: folder lost: %v", round, err)
				}
				if err := b.CreateFolder(ctx, metatest.NewFolder(metatest.User(1), "v", fmt.Sprint("after", round)), 0); err != nil {
					t.Errorf("round %d: CreateFolder: %v", round, err)
				}
				if err := b.Verify(ctx); err != nil {
					t.Error(err)
				}
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestBadgerSharedDB checks that keys of other packages in the same
// database are left alone and do not confuse the store.
func TestBadgerSharedDB(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	b := openBadger(t, dir)
	err := b.DB().Update(func(txn *badger.Txn) error {
		for _, k := range []string{"q/usage/x", "n/other", "mz", "m"} {
			if err := txn.Set([]byte(k), []byte("foreign")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f := metatest.NewFolder(metatest.User(1), "v", "x")
	if err := b.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.PutVolume(ctx, meta.Volume{Name: "v", Path: "/v"}); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteFolder(ctx, f.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(ctx); err != nil {
		t.Errorf("Verify with foreign keys: %v", err)
	}
	if vs, err := b.ListVolumes(ctx); err != nil || len(vs) != 1 {
		t.Errorf("ListVolumes = %v, %v", vs, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openBadger(t, dir)
	defer b.Close()
	err = b.DB().View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte("q/usage/x"))
		return err
	})
	if err != nil {
		t.Errorf("foreign key lost: %v", err)
	}
}

// TestBadgerVerifyDetects makes sure Verify (which the crash test relies
// on) notices each kind of damage.
func TestBadgerVerifyDetects(t *testing.T) {
	owner := metatest.User(1)
	f := metatest.NewFolder(owner, "v", "x")
	p, u := metatest.Project(1).UUID, owner.UUID
	sess := metatest.NewSession("sess", owner, metatest.Mount(f.ID, "x"), metatest.Mount(f.ID, "y"))
	damage := map[string]func(txn *badger.Txn) error{
		"missing name entry": func(txn *badger.Txn) error { return txn.Delete([]byte("m/name/" + owner.String() + "/x")) },
		"dangling name entry": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/name/"+owner.String()+"/y"), []byte(meta.NewFolderID()))
		},
		"name entry to wrong folder": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/name/"+metatest.User(2).String()+"/x"), []byte(f.ID))
		},
		"count too high":      func(txn *badger.Txn) error { return txn.Set([]byte("m/count/"+owner.String()), []byte("2")) },
		"count missing":       func(txn *badger.Txn) error { return txn.Delete([]byte("m/count/" + owner.String())) },
		"count of nobody":     func(txn *badger.Txn) error { return txn.Set([]byte("m/count/"+metatest.User(3).String()), []byte("1")) },
		"folder record gone":  func(txn *badger.Txn) error { return txn.Delete([]byte("m/folder/" + f.ID)) },
		"folder record bad":   func(txn *badger.Txn) error { return txn.Set([]byte("m/folder/"+f.ID), []byte("{")) },
		"folder under bad id": func(txn *badger.Txn) error { return txn.Set([]byte("m/folder/"+meta.NewFolderID()), []byte(`{}`)) },

		"membership index missing": func(txn *badger.Txn) error { return txn.Delete([]byte("m/memberof/" + u + "/" + p)) },
		"membership index dangling": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/memberof/"+u+"/"+metatest.Project(2).UUID), nil)
		},
		"membership index of another user": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/memberof/"+metatest.User(2).UUID+"/"+p), nil)
		},
		"membership record bad": func(txn *badger.Txn) error { return txn.Set([]byte("m/member/"+p+"/"+u), []byte("{")) },
		"membership under wrong key": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/member/"+p+"/"+metatest.User(2).UUID), []byte(`{"project":"`+p+`","user":"`+u+`"}`))
		},
		"membership with bad permission": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/member/"+p+"/"+u), []byte(`{"project":"`+p+`","user":"`+u+`","permission":"all"}`))
		},
		"session index missing": func(txn *badger.Txn) error { return txn.Delete([]byte("m/sessfolder/" + f.ID + "/" + sess.ID)) },
		"session index dangling": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/sessfolder/"+meta.NewFolderID()+"/"+sess.ID), nil)
		},
		"session index of unknown session": func(txn *badger.Txn) error {
			return txn.Set([]byte("m/sessfolder/"+f.ID+"/ghost"), nil)
		},
		"session record gone": func(txn *badger.Txn) error { return txn.Delete([]byte("m/session/" + sess.ID)) },
		"session record bad":  func(txn *badger.Txn) error { return txn.Set([]byte("m/session/"+sess.ID), []byte("[")) },
		"session under wrong key": func(txn *badger.Txn) error {
			raw, _ := json.Marshal(sess)
			return txn.Set([]byte("m/session/other"), raw)
		},
		"session record invalid": func(txn *badger.Txn) error {
			bad := sess
			bad.User = "nobody"
			raw, _ := json.Marshal(bad)
			return txn.Set([]byte("m/session/"+sess.ID), raw)
		},
	}
	for what, fn := range damage {
		t.Run(what, func(t *testing.T) {
			b := openBadger(t, t.TempDir())
			defer b.Close()
			if err := b.CreateFolder(t.Context(), f, 0); err != nil {
				t.Fatal(err)
			}
			if err := b.SetMembership(t.Context(), meta.Membership{Project: p, User: u}); err != nil {
				t.Fatal(err)
			}
			if err := b.PutSession(t.Context(), sess); err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(t.Context()); err != nil {
				t.Fatalf("Verify before damage: %v", err)
			}
			if err := b.DB().Update(fn); err != nil {
				t.Fatal(err)
			}
			if err := b.Verify(t.Context()); !errors.Is(err, meta.ErrCorrupt) {
				t.Errorf("Verify after %s: %v, want ErrCorrupt", what, err)
			}
		})
	}
}

// TestBadgerConflictRetry makes a transaction lose a conflict on purpose:
// the update callback commits a change to the same record through DB()
// behind the store's back.
func TestBadgerConflictRetry(t *testing.T) {
	ctx := t.Context()
	b := openBadger(t, t.TempDir())
	defer b.Close()
	f := metatest.NewFolder(metatest.User(1), "v", "x")
	if err := b.CreateFolder(ctx, f, 0); err != nil {
		t.Fatal(err)
	}
	sneak := func(status meta.Status) error {
		return b.DB().Update(func(txn *badger.Txn) error {
			g := f
			g.Status = status
			raw := fmt.Sprintf(`{"id":%q,"name":%q,"owner":%q,"volume":%q,"usage_mode":"general","permission":"rw","cloneable":false,"status":%q,"created_at":"2020-01-01T00:00:00Z","updated_at":"2020-01-01T00:00:00Z"}`,
				g.ID, g.Name, g.Owner.String(), g.Volume, g.Status)
			return txn.Set([]byte("m/folder/"+f.ID), []byte(raw))
		})
	}

	calls := 0
	var seen []meta.Status
	got, err := b.UpdateFolder(ctx, f.ID, func(g *meta.Folder) error {
		calls++
		seen = append(seen, g.Status)
		if calls == 1 {
			if err := sneak(meta.StatusMounted); err != nil {
				return err
			}
		}
		g.Cloneable = true
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateFolder with one conflict: %v", err)
	}
	if calls != 2 || seen[1] != meta.StatusMounted {
		t.Errorf("callback ran %d times and saw statuses %v; want 2 runs, the second seeing the concurrent change", calls, seen)
	}
	if got.Status != meta.StatusMounted || !got.Cloneable {
		t.Errorf("result %+v lost the concurrent change or its own", got)
	}

	// A transaction that loses every time gives up with ErrConflict and
	// writes nothing of its own.
	calls = 0
	_, err = b.UpdateFolder(ctx, f.ID, func(g *meta.Folder) error {
		calls++
		g.Name = "never"
		return sneak(meta.StatusReady)
	})
	if !errors.Is(err, meta.ErrConflict) {
		t.Fatalf("UpdateFolder that always conflicts: %v, want ErrConflict", err)
	}
	if calls < 2 {
		t.Errorf("callback ran %d times; the conflict was not retried", calls)
	}
	if _, err := b.FolderByName(ctx, metatest.User(1), "never"); !errors.Is(err, meta.ErrNotFound) {
		t.Errorf("the losing rename was written: %v", err)
	}
	if err := b.Verify(ctx); err != nil {
		t.Error(err)
	}
}

func TestBadgerLogLevels(t *testing.T) {
	for _, lvl := range []zerolog.Level{zerolog.TraceLevel, zerolog.InfoLevel} {
		var buf bytes.Buffer
		dir := t.TempDir()
		b, err := meta.OpenBadger(dir, zerolog.New(zerolog.SyncWriter(&buf)).Level(lvl))
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		fromBadger := 0
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			if !strings.Contains(line, `"sub":"badger"`) {
				continue
			}
			fromBadger++
			if strings.Contains(line, `"level":"info"`) {
				t.Errorf("badger logged at info: %s", line)
			}
		}
		if lvl == zerolog.TraceLevel && fromBadger == 0 {
			t.Errorf("no badger messages reached zerolog at trace level:\n%s", buf.String())
		}
		if lvl == zerolog.InfoLevel && fromBadger != 0 {
			t.Errorf("badger's routine messages show at info level:\n%s", buf.String())
		}
	}
}

// ---- crash test ----

// The crash helper prints one line before each operation ("I <op> <id>
// [<name>]") and one after it: "A" when it succeeded, "E" when the store
// refused it. Stdout is unbuffered, so the parent sees every line written
// before the kill. Session operations are "I S <session> <sig>" (put) and
// "I X <session>" (delete); sig names the mounts (see crashSession).

const crashOwners = 3
const crashLimit = 12
const crashSessions = 5
const crashFolders = 6

// crashFolder is the k-th folder id sessions of the crash test mount.
func crashFolder(k int) string { return fmt.Sprintf("%032x", 0xc000+k) }

// crashSession builds the session a put with signature sig writes: sig is
// "-" (no mounts) or mount numbers joined by "+", mount k being folder
// crashFolder(k) under the name "n<k>".
func crashSession(id, sig string) meta.Session {
	s := metatest.NewSession(id, metatest.User(1))
	if sig == "-" {
		return s
	}
	for _, k := range strings.Split(sig, "+") {
		n, _ := strconv.Atoi(k)
		s.Mounts = append(s.Mounts, metatest.Mount(crashFolder(n), "n"+k))
	}
	return s
}

// crashSig is the signature of a stored session.
func crashSig(s meta.Session) string {
	if len(s.Mounts) == 0 {
		return "-"
	}
	var ks []string
	for _, m := range s.Mounts {
		ks = append(ks, strings.TrimPrefix(m.Name, "n"))
	}
	return strings.Join(ks, "+")
}

func crashHelper(dir string) int {
	ctx := context.Background()
	b, err := meta.OpenBadger(dir, zerolog.New(os.Stderr).Level(zerolog.WarnLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	live := map[string]meta.ScopeID{}
	all, err := b.ListFolders(ctx, meta.FolderFilter{IncludeDeleted: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, f := range all {
		live[f.ID] = f.Owner
	}
	pick := func() string {
		for id := range live {
			return id
		}
		return ""
	}
	report := func(err error) bool {
		switch {
		case err == nil:
			fmt.Println("A")
		case errors.Is(err, meta.ErrExists), errors.Is(err, meta.ErrLimitExceeded), errors.Is(err, meta.ErrNotFound):
			fmt.Println("E")
		default:
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second) // the parent kills long before
	for time.Now().Before(deadline) {
		name := fmt.Sprint("f", rand.IntN(30))
		if rand.IntN(3) == 0 {
			id := fmt.Sprint("s", rand.IntN(crashSessions))
			if rand.IntN(4) == 0 {
				fmt.Println("I X", id)
				if !report(b.DeleteSession(ctx, id)) {
					return 1
				}
				continue
			}
			var ks []string
			for k := range crashFolders {
				if rand.IntN(2) == 0 {
					ks = append(ks, strconv.Itoa(k))
				}
			}
			sig := strings.Join(ks, "+")
			if sig == "" {
				sig = "-"
			}
			fmt.Println("I S", id, sig)
			if !report(b.PutSession(ctx, crashSession(id, sig))) {
				return 1
			}
			continue
		}
		switch op := rand.IntN(10); {
		case op < 5 || len(live) == 0:
			f := metatest.NewFolder(metatest.User(rand.IntN(crashOwners)), fmt.Sprint("v", rand.IntN(2)), name)
			fmt.Println("I C", f.ID, name)
			err := b.CreateFolder(ctx, f, crashLimit)
			if err == nil {
				live[f.ID] = f.Owner
			}
			if !report(err) {
				return 1
			}
		case op < 7:
			id := pick()
			fmt.Println("I R", id, name)
			_, err := b.UpdateFolder(ctx, id, func(f *meta.Folder) error { f.Name = name; return nil })
			if !report(err) {
				return 1
			}
		case op < 8:
			id := pick()
			fmt.Println("I T", id)
			_, err := b.UpdateFolder(ctx, id, func(f *meta.Folder) error { f.Status = meta.StatusDeletePending; return nil })
			if !report(err) {
				return 1
			}
		default:
			id := pick()
			fmt.Println("I D", id)
			err := b.DeleteFolder(ctx, id)
			delete(live, id)
			if !report(err) {
				return 1
			}
		}
	}
	if err := b.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// crashModel is what the parent knows about the folders from the helper's
// acknowledged operations.
type crashModel struct {
	names    map[string]string // id -> name
	sessions map[string]string // session id -> signature
	pending  []string          // the operation in flight when the helper died
}

func (m *crashModel) apply(op []string) {
	switch op[0] {
	case "C", "R":
		m.names[op[1]] = op[2]
	case "D":
		delete(m.names, op[1])
	case "S":
		m.sessions[op[1]] = op[2]
	case "X":
		delete(m.sessions, op[1])
	}
}

// checkSessions compares the sessions in b with the model after a crash
// (the interrupted operation may or may not have happened, nothing in
// between), checks the folder index against them and takes the
// interrupted operation's real outcome into the model.
func (m *crashModel) checkSessions(t *testing.T, round int, b *meta.Badger) {
	t.Helper()
	ctx := t.Context()
	uncertain, pendingSig := "", ""
	if m.pending != nil && (m.pending[0] == "S" || m.pending[0] == "X") {
		uncertain = m.pending[1]
		if m.pending[0] == "S" {
			pendingSig = m.pending[2]
		}
	}
	all, err := b.ListSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	using := map[string][]string{}
	for _, s := range all {
		sig := crashSig(s)
		found[s.ID] = sig
		want, known := m.sessions[s.ID]
		switch {
		case s.ID == uncertain:
			if (pendingSig == "" || sig != pendingSig) && (!known || sig != want) {
				t.Errorf("round %d: interrupted session %s has mounts %s, want %q or its acknowledged %q", round, s.ID, sig, pendingSig, want)
			}
		case !known:
			t.Errorf("round %d: session %s exists but was never acknowledged", round, s.ID)
		case sig != want:
			t.Errorf("round %d: session %s has mounts %s, want %s", round, s.ID, sig, want)
		}
		for _, f := range metatestFolders(s) {
			using[f] = append(using[f], s.ID)
		}
	}
	for id := range m.sessions {
		if _, ok := found[id]; !ok && id != uncertain {
			t.Errorf("round %d: acknowledged session %s is missing", round, id)
		}
	}
	for k := range crashFolders {
		f := crashFolder(k)
		got, err := b.SessionsUsingFolder(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(using[f]) && !(len(got) == 0 && len(using[f]) == 0) {
			t.Errorf("round %d: SessionsUsingFolder(%s) = %q, the records say %q", round, f, got, using[f])
		}
	}
	m.sessions = found
}

// metatestFolders returns the distinct folder ids a session mounts, in
// mount order.
func metatestFolders(s meta.Session) []string {
	var out []string
	for _, m := range s.Mounts {
		if !slices.Contains(out, m.FolderID) {
			out = append(out, m.FolderID)
		}
	}
	return out
}

func TestBadgerCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills helper processes")
	}
	ctx := t.Context()
	dir := t.TempDir()
	model := &crashModel{names: map[string]string{}, sessions: map[string]string{}}
	for round := range 10 {
		model.pending = nil
		// killAfter 0 kills the helper while it is still opening the
		// database (replaying after the previous kill).
		killAfter := rand.IntN(40)
		if round == 0 || round == 5 {
			killAfter = 0
		}
		acks, finished := runCrashRound(t, dir, model, killAfter)

		b := openBadger(t, dir)
		if err := b.Verify(ctx); err != nil {
			t.Fatalf("round %d: after SIGKILL: %v", round, err)
		}
		all, err := b.ListFolders(ctx, meta.FolderFilter{IncludeDeleted: true})
		if err != nil {
			t.Fatal(err)
		}
		uncertain := ""
		if model.pending != nil {
			uncertain = model.pending[1]
		}
		found := map[string]bool{}
		perOwner := map[meta.ScopeID]int{}
		for _, f := range all {
			found[f.ID] = true
			perOwner[f.Owner]++
			want, known := model.names[f.ID]
			switch {
			case f.ID == uncertain:
				// Either outcome of the interrupted operation is fine,
				// but nothing in between.
				if f.Name != model.pending[2] && (!known || f.Name != want) {
					t.Errorf("round %d: interrupted folder %s is named %q, want %q or its acknowledged name %q", round, f.ID, f.Name, model.pending[2], want)
				}
			case !known:
				t.Errorf("round %d: folder %s (%q) exists but was never acknowledged", round, f.ID, f.Name)
			case f.Name != want:
				t.Errorf("round %d: folder %s is named %q, want %q", round, f.ID, f.Name, want)
			}
		}
		for id := range model.names {
			if !found[id] && id != uncertain {
				t.Errorf("round %d: acknowledged folder %s is missing", round, id)
			}
		}
		for o, n := range perOwner {
			if n > crashLimit {
				t.Errorf("round %d: %s has %d folders, over the limit %d", round, o, n, crashLimit)
			}
		}
		// Take the interrupted operation's real outcome into the model.
		if uncertain != "" {
			delete(model.names, uncertain)
			for _, f := range all {
				if f.ID == uncertain {
					model.names[f.ID] = f.Name
				}
			}
		}
		model.checkSessions(t, round, b)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d acknowledged operations, killed=%v, %d folders, %d sessions", round, acks, !finished, len(all), len(model.sessions))
		if t.Failed() {
			return
		}
	}
}

// runCrashRound starts the helper on dir, kills it with SIGKILL after
// killAfter acknowledged operations (and a random extra moment), and folds
// the helper's output into model.
func runCrashRound(t *testing.T, dir string, model *crashModel, killAfter int) (acks int, finished bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=crash", envDir+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed, waited := false, false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	if killAfter == 0 {
		time.Sleep(time.Duration(rand.IntN(20000)) * time.Microsecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		killed = true
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 3 && fields[0] == "I":
			model.pending = fields[1:]
			if len(model.pending) == 2 {
				model.pending = append(model.pending, "")
			}
		case len(fields) == 1 && fields[0] == "A" && model.pending != nil:
			model.apply(model.pending)
			model.pending = nil
			acks++
		case len(fields) == 1 && fields[0] == "E" && model.pending != nil:
			model.pending = nil
		default:
			t.Fatalf("helper wrote %q", sc.Text())
		}
		if acks >= killAfter && !killed {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	waited = true
	if killed {
		var ee *exec.ExitError
		if !errors.As(err, &ee) && err != nil {
			t.Fatalf("helper: %v", err)
		}
		if err == nil {
			// It finished on its own before the signal landed.
			return acks, true
		}
		return acks, false
	}
	if err != nil {
		t.Fatalf("helper failed: %v; stderr: %s", err, stderr.String())
	}
	return acks, true
}
