package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vfolder/vfolder/api"
	"github.com/vfolder/vfolder/internal/units"
)

// Exit codes (see the package comment).
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// env is what a run of the CLI reads and writes; tests replace it.
type env struct {
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
	isTerminal func() bool // whether stdin is an interactive terminal
}

func stdio() env {
	return env{
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
		isTerminal: func() bool {
			_, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS)
			return err == nil
		},
	}
}

// usageError is an error in the shape of the command line: exit code 2.
type usageError struct {
	msg  string
	help string // the command to run for help, e.g. "vfolder create --help"
}

func (e *usageError) Error() string { return e.msg }

func usagef(c *cli.Context, format string, args ...any) error {
	help := "vfolder --help"
	if name := commandPath(c); name != "" {
		help = "vfolder " + name + " --help"
	}
	return &usageError{msg: fmt.Sprintf(format, args...), help: help}
}

// run runs the CLI with args (args[0] is the program name) and returns the
// exit code.
func run(ctx context.Context, args []string, e env) int {
	st := &state{env: e}
	app := newApp(st)
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "vfolder: %s\n", ue.msg)
		if ue.help != "" {
			fmt.Fprintf(e.stderr, "Run '%s' for usage.\n", ue.help)
		}
		return exitUsage
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		// urfave's own errors (e.g. help for an unknown topic) are usage errors.
		fmt.Fprintf(e.stderr, "vfolder: %s\n", strings.TrimSpace(err.Error()))
		return exitUsage
	}
	fmt.Fprintf(e.stderr, "vfolder: %s\n", errorMessage(err))
	return exitFail
}

// errorMessage is the text shown for a failed request.
func errorMessage(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// state is shared by the commands of one run.
type state struct {
	env
	client *api.Client
	json   bool
}

const appHelp = `Manage virtual folders, quota scopes and resource policies through vfolderd.

A folder is referred to (REF) by its id (32 hex digits or a dashed UUID), or by
its name together with --user UUID or --project UUID (its owner).

` + units.UnitHelp + `.
"unlimited" or 0 removes a limit.

Exit codes: 0 ok, 1 the request failed or was refused, 2 usage error.`

func newApp(st *state) *cli.App {
	app := &cli.App{
		Name:                 "vfolder",
		Usage:                "administer vfolderd's virtual folders",
		Description:          appHelp,
		HideVersion:          true,
		EnableBashCompletion: false,
		Reader:               st.stdin,
		Writer:               st.stdout,
		ErrWriter:            st.stderr,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "socket", Usage: "vfolderd's API socket", EnvVars: []string{"VFOLDER_SOCKET"}, Value: api.DefaultSocket},
			&cli.BoolFlag{Name: "json", Usage: "print results as JSON (the API's objects)"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up on a request after this long", Value: api.DefaultTimeout},
		}, remoteFlags()...),
		Before: func(c *cli.Context) error {
			var err error
			if st.client, err = newClient(c); err != nil {
				return err
			}
			st.json = c.Bool("json")
			return nil
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(nil, "unknown command %q", c.Args().First())
			}
			_ = cli.ShowAppHelp(c)
			return usagef(nil, "no command given")
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() maps errors to exit codes
		Commands:       append(commands(st), certCommand(st), completionCommand(st)),
	}
	app.OnUsageError = onUsageError
	for _, cmd := range app.Commands {
		setUsageHandlers(cmd)
	}
	return app
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usagef(c, "%s", err.Error())
}

func setUsageHandlers(cmd *cli.Command) {
	cmd.OnUsageError = onUsageError
	if len(cmd.Subcommands) > 0 && cmd.Action == nil {
		names := make([]string, 0, len(cmd.Subcommands))
		for _, s := range cmd.Subcommands {
			names = append(names, s.Name)
		}
		group := cmd.Name
		cmd.Action = func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "unknown subcommand %q of %q (want one of: %s)", c.Args().First(), group, strings.Join(names, ", "))
			}
			_ = cli.ShowSubcommandHelp(c)
			return usagef(c, "%q needs a subcommand: %s", group, strings.Join(names, ", "))
		}
	}
	for _, s := range cmd.Subcommands {
		setUsageHandlers(s)
	}
}

// commandPath is the full name of the running command, with its group
// ("quota-scope set"); "" for the app itself.
func commandPath(c *cli.Context) string {
	if c == nil {
		return ""
	}
	// Lineage runs from c up to the app's own root command, which is
	// not part of the path.
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil && x.Command.Name != "" {
			names = append([]string{x.Command.Name}, names...)
		}
	}
	if len(names) > 0 {
		names = names[1:]
	}
	return strings.Join(names, " ")
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int) error {
	n := c.NArg()
	switch {
	case n < min:
		return usagef(c, "%s needs %s, got %d", commandPath(c), argsDesc(c.Command), n)
	case max >= 0 && n > max:
		return usagef(c, "%s takes %s, got %d (extra: %q)", commandPath(c), argsDesc(c.Command), n, c.Args().Slice()[max:])
	}
	return nil
}

func argsDesc(cmd *cli.Command) string {
	if cmd.ArgsUsage == "" {
		return "no arguments"
	}
	return "arguments " + cmd.ArgsUsage
}

func ctxOf(c *cli.Context) context.Context {
	if c.Context != nil {
		return c.Context
	}
	return context.Background()
}

// flagSpec maps every name of flags (with and without dashes stripped) to
// whether the flag takes a value.
func flagSpec(flags []cli.Flag) map[string]bool {
	m := map[string]bool{}
	for _, f := range flags {
		takes := true
		if tv, ok := f.(interface{ TakesValue() bool }); ok {
			takes = tv.TakesValue()
		}
		for _, n := range f.Names() {
			m[n] = takes
		}
	}
	return m
}

func isFlagToken(a string) bool { return len(a) > 1 && a[0] == '-' }

// looksNegative reports whether a looks like a negative number ("-5G",
// "-.5"), which is a positional argument, not a flag.
func looksNegative(a string) bool {
	return len(a) > 1 && a[0] == '-' && (a[1] >= '0' && a[1] <= '9' || a[1] == '.')
}

// reorderArgs rewrites args so that urfave's parser, which stops at the
// first positional argument, sees every flag: flags of the final command
// that follow its arguments are moved in front of them (followed by "--"),
// and global flags given after the command are moved before it.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	globals := flagSpec(app.Flags)
	globals["help"], globals["h"] = false, false

	var global []string
	i := 1
	// Leading global flags.
	for i < len(args) && isFlagToken(args[i]) && args[i] != "--" {
		name, _, hasVal := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		global = append(global, args[i])
		if globals[name] && !hasVal && i+1 < len(args) {
			global = append(global, args[i+1])
			i++
		}
		i++
	}
	// The command path.
	var path []string
	cmds := app.Commands
	var leaf *cli.Command
	for i < len(args) {
		var found *cli.Command
		for _, c := range cmds {
			if c.HasName(args[i]) {
				found = c
				break
			}
		}
		if found == nil {
			break
		}
		path = append(path, args[i])
		i++
		if len(found.Subcommands) == 0 {
			leaf = found
			break
		}
		cmds = found.Subcommands
	}
	if leaf == nil {
		return args // unknown command, a group, or help: leave it to urfave
	}
	spec := flagSpec(leaf.Flags)
	spec["help"], spec["h"] = false, false
	var flags, pos []string
	rest := args[i:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			pos = append(pos, rest[j+1:]...)
			break
		}
		if !isFlagToken(a) || looksNegative(a) {
			pos = append(pos, a)
			continue
		}
		name, _, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		dst := &flags
		takes, ok := spec[name]
		if !ok {
			if gt, isGlobal := globals[name]; isGlobal {
				dst, takes = &global, gt
			}
			// An unknown flag stays with the command, which reports it.
		}
		*dst = append(*dst, a)
		if takes && !hasVal && j+1 < len(rest) {
			*dst = append(*dst, rest[j+1])
			j++
		}
	}
	out := make([]string, 0, len(args)+1)
	out = append(out, args[0])
	out = append(out, global...)
	out = append(out, path...)
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}
