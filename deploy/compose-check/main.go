// compose-check loads Compose files with compose-go, the loader behind `docker compose config`, and prints
// the resolved project as JSON on stdout. It needs no Docker engine.
//
// Loading does what `docker compose up` does before it starts anything: validate against the Compose
// specification's JSON schema, interpolate ${VAR}, ${VAR:-default} and ${VAR:?message} from this process's
// environment (plus -env-file files: unlike docker compose, no .env file is read unless named, so a
// developer's local .env never changes what the tests see), merge anchors and extends, normalise the short
// syntax (ports, volumes, depends_on) and check consistency (depends_on targets, declared volumes and
// networks). A failure is printed on stderr with exit status 1; a usage error exits with 2.
// tests/unit/test_deploy.py applies meterline's own rules to the JSON.
//
//	compose-check [-env-file FILE]... [-project-directory DIR] docker-compose.yml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var envFiles fileList
	flag.Var(&envFiles, "env-file", "read interpolation variables from this file (repeatable; none by default)")
	dir := flag.String("project-directory", "", "where relative paths resolve (default: the first file's folder)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-env-file FILE]... [-project-directory DIR] compose.yml...")
		os.Exit(2)
	}
	options := []cli.ProjectOptionsFn{cli.WithOsEnv}
	if *dir != "" {
		options = append(options, cli.WithWorkingDirectory(*dir))
	}
	if len(envFiles) > 0 {
		options = append(options, cli.WithEnvFiles(envFiles...), cli.WithDotEnv)
	}
	options = append(options, cli.WithInterpolation(true), cli.WithNormalization(true), cli.WithConsistency(true))

	if err := run(flag.Args(), options); err != nil {
		fmt.Fprintln(os.Stderr, "compose-check:", err)
		os.Exit(1)
	}
}

func run(paths []string, options []cli.ProjectOptionsFn) error {
	projectOptions, err := cli.NewProjectOptions(paths, options...)
	if err != nil {
		return err
	}
	project, err := projectOptions.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return fmt.Errorf("cannot render the project: %w", err)
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}
