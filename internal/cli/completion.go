package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// The bash and zsh scripts ask the binary itself for candidates (urfave's
// --generate-bash-completion), so they follow the commands and flags of the
// installed version.
const bashCompletion = `# cachekeeper bash completion: source <(cachekeeper completion bash)
_cachekeeper() {
  local cur="${COMP_WORDS[COMP_CWORD]}" words
  if [[ "$cur" == -* ]]; then
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _cachekeeper cachekeeper
`

const zshCompletion = `#compdef cachekeeper
# cachekeeper zsh completion: source <(cachekeeper completion zsh)
_cachekeeper() {
  local -a cands
  local cur="${words[-1]}"
  if [[ "$cur" == -* ]]; then
    cands=("${(@f)$(${words[@]:0:#words[@]-1} "$cur" --generate-bash-completion 2>/dev/null)}")
  else
    cands=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n "${cands[1]}" ]]; then
    _describe 'cachekeeper' cands
  else
    _files
  fi
}
compdef _cachekeeper cachekeeper
`

var completionShells = []string{"bash", "zsh", "fish"}

func completionCommand(io IO) *ucli.Command {
	return &ucli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(cachekeeper completion bash)",
		ArgsUsage: strings.Join(completionShells, "|"),
		Action: func(c *ucli.Context) error {
			if c.NArg() != 1 {
				return usagef("give one shell: %s", strings.Join(completionShells, ", "))
			}
			switch sh := c.Args().First(); sh {
			case "bash":
				_, err := fmt.Fprint(io.Stdout, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(io.Stdout, zshCompletion)
				return err
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return fmt.Errorf("fish completion: %w", err)
				}
				_, err = fmt.Fprint(io.Stdout, s)
				return err
			default:
				return usagef("unknown shell %q (shells: %s)", sh, strings.Join(completionShells, ", "))
			}
		},
	}
}
