package cli

import (
	"slices"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// globalFlags are the settings every command that loads the configuration
// takes, before or after the command name: `cachekeeper --config x worker`
// is `cachekeeper worker --config x`.
var globalFlags = []string{"config", "c", "redis-url", "database-url", "log-level"}

// completionFlag is urfave's hidden flag asking for completion candidates.
const completionFlag = "--generate-bash-completion"

// normalizeArgs resolves args (without the program name) against the command
// tree before urfave parses them, so that what urfave would ignore or answer
// with a help page is refused with one line instead:
//
//   - an unknown command or subcommand, or a group without its subcommand;
//   - a positional argument to a command that takes none;
//   - a flag the command does not define (global flags included).
//
// It also moves every flag of the leaf command, wherever it was written
// (before the command name, between names, after positional arguments), in
// front of the positional arguments, which is where urfave parses flags, and
// turns `help [command...]` into `command... --help`.
func normalizeArgs(app *ucli.App, args []string) ([]string, error) {
	if slices.Contains(args, completionFlag) {
		return args, nil // the shell asks for candidates: let urfave answer
	}
	var (
		path        []string // command names resolved so far
		flags       []string // flag tokens, in order
		flagNames   []string // their names, as written (for the leaf check)
		positionals []string
		help        bool
		cmds        = app.Commands
		leaf        *ucli.Command
		group       *ucli.Command
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if leaf == nil {
				return nil, unknownCommandErr(path, cmds, "--")
			}
			positionals = append(positionals, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			name, hasValue := flagName(a)
			if name == "h" || name == "help" {
				help = true
				continue
			}
			flags = append(flags, a)
			flagNames = append(flagNames, name)
			if hasValue {
				continue
			}
			cmd := leaf
			if cmd == nil && group != nil {
				if runnable(group) {
					cmd = group // `changes --stream x` runs changes itself
				} else {
					cmd = findCommand(group.Subcommands, "list") // `queues -o json` is `queues list -o json`
				}
			}
			takes, known := flagTakesValue(cmd, name)
			if !known {
				// Before the leaf is known only global flags can come; their
				// values are never optional.
				takes = slices.Contains(globalFlags, name)
			}
			if takes {
				if i+1 >= len(args) {
					return nil, usagef("flag %s needs a value", a)
				}
				i++
				flags = append(flags, args[i])
			}
			continue
		}
		if leaf != nil {
			positionals = append(positionals, a)
			continue
		}
		if a == "help" {
			help = true // `help task delete`: the rest are command names
			continue
		}
		c := findCommand(cmds, a)
		if c == nil {
			return nil, unknownCommandErr(path, cmds, a)
		}
		path = append(path, c.Name)
		if len(c.Subcommands) > 0 {
			group, cmds = c, c.Subcommands
			continue
		}
		leaf = c
	}
	if help {
		return append(path, "--help"), nil
	}
	if len(path) == 0 {
		if len(flags) > 0 && !onlyAppFlags(flagNames) {
			return nil, usagef("flag %s comes without a command (commands: %s)", dashed(firstNonAppFlag(flagNames)), names(app.Commands))
		}
		return args, nil
	}
	if leaf == nil && group != nil && runnable(group) {
		leaf = group // a command that runs itself when given no subcommand
	}
	if leaf == nil && len(positionals) == 0 {
		// A group with a list subcommand lists when given none:
		// `cachekeeper queues` is `cachekeeper queues list`.
		if l := findCommand(group.Subcommands, "list"); l != nil {
			leaf = l
			path = append(path, l.Name)
		}
	}
	if leaf == nil {
		return nil, usagef("'%s' needs a subcommand: %s (see 'cachekeeper %s --help')", "cachekeeper "+strings.Join(path, " "), names(group.Subcommands), strings.Join(path, " "))
	}
	full := "cachekeeper " + strings.Join(path, " ")
	for _, n := range flagNames {
		if _, known := flagTakesValue(leaf, n); !known {
			valid := flagList(leaf)
			if valid == "" {
				return nil, usagef("'%s' takes no flags, got %s", full, dashed(n))
			}
			return nil, usagef("'%s' has no flag %s (its flags: %s)", full, dashed(n), valid)
		}
	}
	if len(positionals) > 0 && strings.TrimSpace(leaf.ArgsUsage) == "" {
		return nil, usagef("'%s' takes no arguments, got %q (see '%s --help')", full, positionals[0], full)
	}
	out := append(append([]string(nil), path...), flags...)
	if len(positionals) > 0 {
		out = append(out, "--")
		out = append(out, positionals...)
	}
	return out, nil
}

// flagName returns the name of a flag token ("--queue=x" is "queue") and
// whether the token carries its value.
func flagName(tok string) (string, bool) {
	name := strings.TrimLeft(tok, "-")
	if n, _, ok := strings.Cut(name, "="); ok {
		return n, true
	}
	return name, false
}

// flagTakesValue reports whether cmd defines the flag name and whether it
// takes a value (a bool flag does not). A nil cmd defines nothing.
func flagTakesValue(cmd *ucli.Command, name string) (takes, known bool) {
	if cmd == nil {
		return false, false
	}
	for _, f := range cmd.Flags {
		if slices.Contains(f.Names(), name) {
			if d, ok := f.(ucli.DocGenerationFlag); ok {
				return d.TakesValue(), true
			}
			return true, true
		}
	}
	return false, false
}

func findCommand(cmds []*ucli.Command, name string) *ucli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func unknownCommandErr(path []string, cmds []*ucli.Command, name string) error {
	if len(path) == 0 {
		return usagef("unknown command %q (commands: %s)", name, names(cmds))
	}
	return usagef("unknown subcommand %q of 'cachekeeper %s' (subcommands: %s)", name, strings.Join(path, " "), names(cmds))
}

// appFlags are what the app itself takes without a command.
var appFlags = []string{"version", "v"}

func onlyAppFlags(names []string) bool { return firstNonAppFlag(names) == "" }

func firstNonAppFlag(names []string) string {
	for _, n := range names {
		if !slices.Contains(appFlags, n) {
			return n
		}
	}
	return ""
}

func names(cmds []*ucli.Command) string {
	var out []string
	for _, c := range cmds {
		if !c.Hidden {
			out = append(out, c.Name)
		}
	}
	return strings.Join(out, ", ")
}

func flagList(cmd *ucli.Command) string {
	var out []string
	for _, f := range cmd.Flags {
		out = append(out, dashed(f.Names()[0]))
	}
	return strings.Join(out, ", ")
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// selfRunning are the commands with subcommands that also run by
// themselves when given none: `cachekeeper changes` streams, `cachekeeper
// changes status` reports. Every other group needs its subcommand.
var selfRunning = []string{"changes"}

func runnable(c *ucli.Command) bool { return slices.Contains(selfRunning, c.Name) }

// groupAction is the Action of a command that only groups subcommands; it
// is reached only by paths normalizeArgs did not resolve (it never should).
func groupAction(c *ucli.Context) error {
	if c.Args().Present() {
		return usagef("unknown subcommand %q of '%s' (subcommands: %s)", c.Args().First(), c.Command.HelpName, names(c.Command.Subcommands))
	}
	return usagef("'%s' needs a subcommand: %s", c.Command.HelpName, names(c.Command.Subcommands))
}
