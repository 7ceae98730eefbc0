// Full TLS handshakes per second: one new connection per request, never resumed.
//
//	go build -o handshakes bench/handshakes.go
//	handshakes -url https://127.0.0.1:PORT/PATH -host NAME [-conns 8] [-duration 10s]
//
// Each of -conns goroutines loops for -duration: connect, full TLS handshake
// (SNI = -host, X25519 key exchange, no session cache, so nothing is ever
// resumed), one GET with "Host: NAME" and "Connection: close", read to EOF,
// close. wrk and h2load cannot measure this: both resume the TLS session when
// they reconnect. Used by bench/run (case B3).
//
// Prints key=value lines: requests (answered 200), errors (other answers and
// failed connections), reused (resumed handshakes; always 0), seconds, rps,
// p50_ms, p99_ms.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

type result struct {
	latencies []time.Duration
	errors    int
	reused    int
}

func main() {
	rawURL := flag.String("url", "", "https://IP:PORT/PATH to connect to")
	host := flag.String("host", "", "SNI and Host header")
	conns := flag.Int("conns", 8, "concurrent connections")
	duration := flag.Duration("duration", 10*time.Second, "how long to run")
	flag.Parse()
	u, err := url.Parse(*rawURL)
	if err != nil || u.Scheme != "https" || *host == "" {
		fmt.Fprintln(os.Stderr, "handshakes: need -url https://IP:PORT/PATH and -host NAME")
		os.Exit(2)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	path := u.RequestURI()
	cfg := &tls.Config{
		ServerName:         *host,
		InsecureSkipVerify: true, // the self-signed bench cert; the handshake signature is still checked
		CurvePreferences:   []tls.CurveID{tls.X25519},
		NextProtos:         []string{"http/1.1"},
	}
	request := []byte("GET " + path + " HTTP/1.1\r\nHost: " + *host + "\r\nConnection: close\r\n\r\n")

	start := time.Now()
	deadline := start.Add(*duration)
	results := make([]result, *conns)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(r *result) {
			defer wg.Done()
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				ok, reused := once(addr, cfg, request)
				if reused {
					r.reused++
				}
				if ok {
					r.latencies = append(r.latencies, time.Since(t0))
				} else {
					r.errors++
				}
			}
		}(&results[i])
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()

	var all []time.Duration
	errors, reused := 0, 0
	for _, r := range results {
		all = append(all, r.latencies...)
		errors += r.errors
		reused += r.reused
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	fmt.Printf("requests=%d\nerrors=%d\nreused=%d\nseconds=%.3f\nrps=%.2f\np50_ms=%.3f\np99_ms=%.3f\n",
		len(all), errors, reused, seconds, float64(len(all))/seconds,
		percentile(all, 50), percentile(all, 99))
}

// once makes one connection, one request; ok means the answer was 200.
func once(addr string, cfg *tls.Config, request []byte) (ok, reused bool) {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		return false, false
	}
	conn := tls.Client(raw, cfg)
	defer conn.Close()
	if err := conn.Handshake(); err != nil {
		return false, false
	}
	reused = conn.ConnectionState().DidResume
	if _, err := conn.Write(request); err != nil {
		return false, reused
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil {
		return false, reused
	}
	_, _ = io.Copy(io.Discard, br)
	fields := strings.Fields(status)
	return len(fields) > 1 && fields[1] == "200", reused
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return float64(sorted[i]) / float64(time.Millisecond)
}
