// Command admissionclient calls an admission webhook the way kube-apiserver's webhook client
// does: Go's net/http over TLS with the caBundle as its only root and the Service DNS name as
// ServerName, HTTP/2 by ALPN (or HTTP/1.1), a `?timeout=Ns` query and a matching client
// deadline, and an admission.k8s.io/v1 AdmissionReview POSTed as JSON.
//
// With -cases it checks each listed review's decision; with -load it sends the first case at a
// fixed rate and counts failures. Standard library only, so it builds without a module download.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// testCase is one entry of the -cases file.
type testCase struct {
	Name            string          `json:"name"`
	Path            string          `json:"path"`
	Review          json.RawMessage `json:"review"`
	Allowed         bool            `json:"allowed"`
	MessageContains string          `json:"messageContains"`
}

type reviewResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   *struct {
		UID     string `json:"uid"`
		Allowed bool   `json:"allowed"`
		Status  *struct {
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

type options struct {
	url        string
	serverName string
	roots      *x509.CertPool
	proto      string
	timeout    time.Duration
}

// newClient builds a client with a transport of its own, so each call opens new connections.
func newClient(o *options) (*http.Client, *http.Transport) {
	t := &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    o.roots,
			ServerName: o.serverName,
			MinVersion: tls.VersionTLS12,
		},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 100,
		IdleConnTimeout:     90 * time.Second,
	}
	if o.proto == "h2" {
		// A custom TLS config turns HTTP/2 off unless asked for, as client-go asks.
		t.ForceAttemptHTTP2 = true
	} else {
		// A non-nil empty map is Go's documented way to disable HTTP/2.
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: t, Timeout: o.timeout}, t
}

// result of one call: the decision and what was wrong with the exchange, if anything.
type result struct {
	proto   string
	serial  string
	allowed bool
	message string
	elapsed time.Duration
}

// call POSTs one review and checks what the API server checks: status, kinds, uid, protocol.
func call(c *http.Client, o *options, path string, body []byte, uid string) (result, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	url := fmt.Sprintf("%s%s%stimeout=%ds", o.url, path, sep, int(o.timeout/time.Second))
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return result{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, */*")
	started := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	r := result{proto: resp.Proto, elapsed: time.Since(started)}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		r.serial = resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	if err != nil {
		return r, fmt.Errorf("reading the body: %v", err)
	}
	want := 1
	if o.proto == "h2" {
		want = 2
	}
	if resp.ProtoMajor != want {
		return r, fmt.Errorf("answered over %s, wanted HTTP/%d", resp.Proto, want)
	}
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("status %d: %s", resp.StatusCode, truncate(data))
	}
	var rr reviewResponse
	if err := json.Unmarshal(data, &rr); err != nil {
		return r, fmt.Errorf("not an AdmissionReview: %v: %s", err, truncate(data))
	}
	if rr.APIVersion != "admission.k8s.io/v1" || rr.Kind != "AdmissionReview" || rr.Response == nil {
		return r, fmt.Errorf("unexpected answer: %s", truncate(data))
	}
	if rr.Response.UID != uid {
		return r, fmt.Errorf("response uid %q, request uid %q", rr.Response.UID, uid)
	}
	r.allowed = rr.Response.Allowed
	if rr.Response.Status != nil {
		r.message = rr.Response.Status.Message
	}
	return r, nil
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

func requestUID(review json.RawMessage) (string, error) {
	var v struct {
		Request struct {
			UID string `json:"uid"`
		} `json:"request"`
	}
	if err := json.Unmarshal(review, &v); err != nil {
		return "", err
	}
	if v.Request.UID == "" {
		return "", fmt.Errorf("the review has no request.uid")
	}
	return v.Request.UID, nil
}

func check(tc testCase, r result) error {
	if r.allowed != tc.Allowed {
		return fmt.Errorf("allowed=%v, wanted %v (message %q)", r.allowed, tc.Allowed, r.message)
	}
	if tc.MessageContains != "" && !strings.Contains(r.message, tc.MessageContains) {
		return fmt.Errorf("message %q does not contain %q", r.message, tc.MessageContains)
	}
	return nil
}

func runCases(o *options, cases []testCase) int {
	c, t := newClient(o)
	defer t.CloseIdleConnections()
	bad := 0
	for _, tc := range cases {
		uid, err := requestUID(tc.Review)
		if err == nil {
			var r result
			r, err = call(c, o, tc.Path, tc.Review, uid)
			if err == nil {
				err = check(tc, r)
			}
			if err == nil {
				fmt.Printf("ok    %s (%s, allowed=%v)\n", tc.Name, r.proto, r.allowed)
				continue
			}
		}
		bad++
		fmt.Printf("FAIL  %s: %v\n", tc.Name, err)
	}
	fmt.Printf("cases=%d mismatches=%d proto=%s\n", len(cases), bad, o.proto)
	if bad > 0 {
		return 1
	}
	return 0
}

// clientPool hands out the current client; rotate replaces it so that later requests dial
// new connections (and see a rotated serving certificate).
type clientPool struct {
	mu      sync.Mutex
	o       *options
	current *http.Client
	retired []*http.Transport
	all     []*http.Transport
}

func (p *clientPool) get() *http.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

func (p *clientPool) rotate() {
	c, t := newClient(p.o)
	p.mu.Lock()
	defer p.mu.Unlock()
	// Connections busy at the last rotation are idle by now: close them too.
	for _, old := range p.retired {
		old.CloseIdleConnections()
	}
	if prev, ok := p.current.Transport.(*http.Transport); ok {
		prev.CloseIdleConnections()
		p.retired = append(p.retired[:0], prev)
	}
	p.current = c
	p.all = append(p.all, t)
}

func (p *clientPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.all {
		t.CloseIdleConnections()
	}
}

func runLoad(o *options, tc testCase, duration time.Duration, rate, workers int, newConnEvery time.Duration) int {
	if rate <= 0 || workers <= 0 {
		fmt.Fprintln(os.Stderr, "-rate and -workers must be positive")
		return 2
	}
	uid, err := requestUID(tc.Review)
	if err != nil {
		fmt.Fprintf(os.Stderr, "case %s: %v\n", tc.Name, err)
		return 2
	}
	// Every request gets its own uid, so a mixed-up answer is caught.
	template := []byte(tc.Review)
	quotedUID, _ := json.Marshal(uid)

	c, t := newClient(o)
	pool := &clientPool{o: o, current: c, all: []*http.Transport{t}}
	defer pool.closeAll()

	var requests, failures atomic.Int64
	var mu sync.Mutex
	var latencies []time.Duration
	protos := map[string]int{}
	serials := map[string]int{}
	errorsSeen := map[string]int{}

	jobs := make(chan int64, workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				id := fmt.Sprintf("%s-load-%d", uid, n)
				quoted, _ := json.Marshal(id)
				body := bytes.Replace(template, quotedUID, quoted, 1)
				r, err := call(pool.get(), o, tc.Path, body, id)
				if err == nil {
					err = check(tc, r)
				}
				requests.Add(1)
				mu.Lock()
				if r.proto != "" {
					protos[r.proto]++
				}
				if r.serial != "" {
					serials[r.serial]++
				}
				if err != nil {
					failures.Add(1)
					errorsSeen[err.Error()]++
				} else {
					latencies = append(latencies, r.elapsed)
				}
				mu.Unlock()
			}
		}()
	}

	stopRotation := make(chan struct{})
	rotations := 0
	var rotationDone sync.WaitGroup
	if newConnEvery > 0 {
		rotationDone.Add(1)
		go func() {
			defer rotationDone.Done()
			tick := time.NewTicker(newConnEvery)
			defer tick.Stop()
			for {
				select {
				case <-tick.C:
					pool.rotate()
					rotations++
				case <-stopRotation:
					return
				}
			}
		}()
	}

	started := time.Now()
	interval := time.Second / time.Duration(rate)
	tick := time.NewTicker(interval)
	var sent int64
	for time.Since(started) < duration {
		<-tick.C
		// Blocks when every worker is busy: the achieved rate is reported below.
		jobs <- sent
		sent++
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	close(stopRotation)
	rotationDone.Wait()
	elapsed := time.Since(started)

	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(p*float64(len(latencies)-1))]
	}
	names := make([]string, 0, len(protos))
	for p := range protos {
		names = append(names, p)
	}
	sort.Strings(names)
	for e, n := range errorsSeen {
		fmt.Printf("error x%d: %s\n", n, e)
	}
	fmt.Printf("requests=%d failures=%d proto=%s rate=%.1f/s p50=%s p99=%s max=%s certs=%d new-transports=%d\n",
		requests.Load(), failures.Load(), strings.Join(names, ","),
		float64(requests.Load())/elapsed.Seconds(), pct(0.50), pct(0.99), pct(1), len(serials), rotations)
	if failures.Load() > 0 {
		return 1
	}
	return 0
}

func main() {
	url := flag.String("url", "", "base URL of the webhook, e.g. https://127.0.0.1:9443")
	caFile := flag.String("ca", "", "caBundle PEM file: the only trusted root")
	serverName := flag.String("server-name", "kybern-svc.kybern.svc", "TLS server name (the Service DNS name)")
	proto := flag.String("proto", "h2", "h2 or http1")
	timeoutSeconds := flag.Int("timeout-seconds", 10, "per-request timeout, also sent as ?timeout=Ns")
	casesFile := flag.String("cases", "", "JSON list of cases")
	load := flag.Duration("load", 0, "send the first case repeatedly for this long")
	rate := flag.Int("rate", 100, "requests per second in -load mode")
	workers := flag.Int("workers", 32, "concurrent requests at most in -load mode")
	newConnEvery := flag.Duration("new-conn-every", 0, "in -load mode, replace the transport this often so new connections are opened")
	flag.Parse()

	if *url == "" || *caFile == "" || *casesFile == "" || (*proto != "h2" && *proto != "http1") || *timeoutSeconds <= 0 {
		fmt.Fprintln(os.Stderr, "usage: admissionclient -url URL -ca FILE -cases FILE [-proto h2|http1] [-load DURATION -rate N]")
		os.Exit(2)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fmt.Fprintf(os.Stderr, "%s: no PEM certificate\n", *caFile)
		os.Exit(2)
	}
	data, err := os.ReadFile(*casesFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var cases []testCase
	if err := json.Unmarshal(data, &cases); err != nil || len(cases) == 0 {
		fmt.Fprintf(os.Stderr, "%s: want a non-empty JSON list of cases (%v)\n", *casesFile, err)
		os.Exit(2)
	}
	o := &options{
		url:        strings.TrimRight(*url, "/"),
		serverName: *serverName,
		roots:      roots,
		proto:      *proto,
		timeout:    time.Duration(*timeoutSeconds) * time.Second,
	}
	if *load > 0 {
		os.Exit(runLoad(o, cases[0], *load, *rate, *workers, *newConnEvery))
	}
	os.Exit(runCases(o, cases))
}
