// promql-check validates Prometheus rule groups the way `promtool check rules` does, with
// Prometheus's own rule-file parser: YAML shape, PromQL expressions, durations, label
// names, and the Go templates of labels and annotations. It reads one rule-groups
// document (the spec of a PrometheusRule) on stdin, prints each problem on a line, and
// exits 1 if there is any. test/e2e/chart.test.ts runs it on the chart's PrometheusRule.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	content, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.NewTextHandler(os.Stderr, nil)))
	for _, e := range errs {
		fmt.Println(e)
	}
	if len(errs) > 0 {
		os.Exit(1)
	}
	rules := 0
	for _, group := range groups.Groups {
		rules += len(group.Rules)
	}
	fmt.Printf("ok: %d groups, %d rules\n", len(groups.Groups), rules)
}
