// compose-config loads a compose file the way `docker compose config` does (compose-go: the compose
// specification's JSON schema, .env interpolation, profiles, normalization) and prints the resolved model
// as YAML, or the loader's error and exit code 1. It lets the tests validate deploy/compose with docker
// compose's own loader on machines without a Docker engine.
//
//	compose-config [-f compose.yaml] [--profile tls] ...   # run in the project directory (where .env is)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var files, profiles list
	flag.Var(&files, "f", "compose file (repeatable; default compose.yaml)")
	flag.Var(&profiles, "profile", "profile to enable (repeatable)")
	flag.Parse()
	if len(files) == 0 {
		files = list{"compose.yaml"}
	}
	opts, err := cli.NewProjectOptions(files,
		cli.WithOsEnv,
		cli.WithWorkingDirectory("."),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(false),
	)
	if err == nil {
		var out []byte
		project, perr := opts.LoadProject(context.Background())
		if perr == nil {
			out, err = project.MarshalYAML()
			if err == nil {
				os.Stdout.Write(out)
				return
			}
		} else {
			err = perr
		}
	}
	fmt.Fprintln(os.Stderr, "compose-config:", err)
	os.Exit(1)
}
