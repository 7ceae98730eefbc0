// The acmesolver of cert-manager (its HTTP-01 challenge server,
// github.com/cert-manager/cert-manager/pkg/issuer/acme/http/solver), with the
// flags of cert-manager's own acmesolver image: --listen-port, --domain,
// --token, --key. cert-manager's cmd/acmesolver is a module of its own that
// the Go module proxy does not serve; its main is these few lines around the
// solver package, which is served (logging with logr's funcr rather than
// cert-manager's klog set-up, which would pull in its whole API scheme).
package main

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cert-manager/cert-manager/pkg/issuer/acme/http/solver"
	"github.com/go-logr/logr/funcr"
)

func main() {
	s := new(solver.HTTP01Solver)
	flag.IntVar(&s.ListenPort, "listen-port", 8089, "the port number to listen on for connections")
	flag.StringVar(&s.Domain, "domain", "", "the domain name to verify")
	flag.StringVar(&s.Token, "token", "", "the challenge token to verify against")
	flag.StringVar(&s.Key, "key", "", "the challenge key to respond with")
	flag.Parse()
	log := funcr.New(func(prefix, args string) {
		os.Stderr.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{}).WithName("acmesolver")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(shutdown)
	}()
	if err := s.Listen(log); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error(err, "acmesolver failed")
		os.Exit(1)
	}
}
