// Command cleave splits the tables of a live MySQL/MariaDB monolith into shards and proves
// that the shards match it. This file only wires the commands; each command lives in a file
// of its own and the work in the packages it calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-sql-driver/mysql"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/cleave-dev/cleave/config"
	"github.com/cleave-dev/cleave/logging"
)

// Exit codes shared by every command: 0 success, 1 a finding (a failed check, drift),
// 2 could not run.
const (
	exitOK      = 0
	exitFinding = 1
	exitCannot  = 2
)

// exitError carries a command's exit code up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// app holds what every command shares: the flags of the root command, and the config and
// logger they produce.
type app struct {
	configPath string
	logLevel   string
	cfg        *config.Config
	log        *zap.Logger
}

// load reads the configuration and builds the logger; commands call it first.
func (a *app) load() error {
	overrides := map[string]any{}
	if a.logLevel != "" {
		overrides["log.level"] = a.logLevel
	}
	cfg, err := config.LoadWith(a.configPath, overrides)
	if err != nil {
		return &exitError{code: exitCannot, err: err}
	}
	log, err := logging.New(cfg.Log)
	if err != nil {
		return &exitError{code: exitCannot, err: err}
	}
	a.cfg, a.log = cfg, log
	// The MySQL driver's own complaints (a bad idle connection closed, say) go through the
	// same logger instead of straight to stderr.
	if std, err := zap.NewStdLogAt(log.Named("mysql"), zap.WarnLevel); err == nil {
		_ = mysql.SetLogger(std)
	}
	return nil
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "cleave",
		Short:         "Split a live MySQL/MariaDB monolith into shards, and prove the shards match it",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&a.configPath, "config", "c", os.Getenv("CLEAVE_CONFIG"), "YAML configuration file (default $CLEAVE_CONFIG); keys are overridable by CLEAVE_<KEY> environment variables")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "", "override log.level (debug, info, warn, error)")
	root.AddCommand(
		newVersionCmd(),
		newCheckCmd(a),
		newCaptureCmd(a),
		newPrepareCmd(a),
		newSinkCmd(a),
		newReconcileCmd(a),
		newRunCmd(a),
		newBackfillCmd(a),
		newStatusCmd(a),
		newCutoverCmd(a),
		newRollbackCmd(a),
		newFinalizeCmd(a),
	)
	return root
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{}
	root := newRootCmd(a)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if a.log != nil {
		_ = a.log.Sync()
	}
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "cleave:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "cleave:", err)
	return exitCannot
}
