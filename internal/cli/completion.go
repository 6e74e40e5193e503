package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// The bash and zsh scripts ask the binary itself for candidates
// (`cachekeeper WORDS... --generate-bash-completion CUR`, see complete.go),
// so they follow the commands, flags, configuration and queues of the
// installed version.
const bashCompletion = `# cachekeeper bash completion: source <(cachekeeper completion bash)
_cachekeeper() {
  local cur="${COMP_WORDS[COMP_CWORD]}" words
  words=$("${COMP_WORDS[@]:0:$COMP_CWORD}" --generate-bash-completion "$cur" 2>/dev/null)
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _cachekeeper cachekeeper
`

const zshCompletion = `#compdef cachekeeper
# cachekeeper zsh completion: source <(cachekeeper completion zsh)
_cachekeeper() {
  local -a cands
  local cur="${words[-1]}"
  cands=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion "$cur" 2>/dev/null)}")
  if [[ -n "${cands[1]}" ]]; then
    compadd -- "${cands[@]}"
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
