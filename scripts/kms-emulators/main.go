// Command local-kms runs github.com/nsmithuk/local-kms for envseal's tests.
//
// Upstream's main listens on ":"+PORT, i.e. on every interface, and cannot be told
// otherwise. This wrapper serves upstream's own request handler (src.HandleRequest,
// unchanged) on 127.0.0.1 only. Environment, as upstream:
//
//	PORT            TCP port on 127.0.0.1 (default 8080; 0 picks a free one)
//	KMS_ACCOUNT_ID  account id in ARNs (default 111122223333)
//	KMS_REGION      region in ARNs (default eu-west-2)
//	KMS_DATA_PATH   LevelDB directory (default /tmp/local-kms)
//	KMS_EXIT_ON_STDIN_EOF=1  exit when standard input closes (the test harness holds
//	                the write end, so the emulator dies with the test process, even
//	                one killed with SIGKILL)
//
// KMS_SEED_PATH is not supported (upstream's seeding is not exported); tests create
// their keys through the API. Once listening it prints one line on stdout:
// "local-kms listening on 127.0.0.1:PORT".
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	kms "github.com/nsmithuk/local-kms/src"
	"github.com/nsmithuk/local-kms/src/config"
	"github.com/nsmithuk/local-kms/src/data"
)

var Version string

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func main() {
	config.AWSAccountId = env("KMS_ACCOUNT_ID", "111122223333")
	config.AWSRegion = env("KMS_REGION", "eu-west-2")
	dataPath, err := filepath.Abs(env("KMS_DATA_PATH", "/tmp/local-kms"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "local-kms: KMS_DATA_PATH:", err)
		os.Exit(2)
	}
	config.DatabasePath = dataPath
	if os.Getenv("KMS_SEED_PATH") != "" {
		fmt.Fprintln(os.Stderr, "local-kms: KMS_SEED_PATH is not supported by this build; ignored")
	}

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", env("PORT", "8080")))
	if err != nil {
		fmt.Fprintln(os.Stderr, "local-kms:", err)
		os.Exit(1)
	}

	database := data.NewDatabase(config.DatabasePath)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		kms.HandleRequest(w, r, database)
	})
	server := &http.Server{Handler: mux}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		_ = server.Close()
	}()
	if os.Getenv("KMS_EXIT_ON_STDIN_EOF") == "1" {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			_ = server.Close()
		}()
	}

	fmt.Fprintf(os.Stderr, "local-kms %s: account %s, region %s, data %s\n", Version, config.AWSAccountId, config.AWSRegion, config.DatabasePath)
	fmt.Printf("local-kms listening on %s\n", ln.Addr().String())
	err = server.Serve(ln)
	database.Close()
	if err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "local-kms:", err)
		os.Exit(1)
	}
}
