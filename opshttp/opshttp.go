// Package opshttp owns cleave's one operational HTTP listener: /metrics (Prometheus),
// /healthz (the process is alive), /readyz (every dependency answers; 503 with the reasons
// otherwise) and /status (a JSON document the running parts describe themselves with). It
// knows nothing of capture, sinks or the checker: they hand it checks and a status function.
package opshttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Check is one readiness check: it returns nil when its dependency answers.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Server serves the operational endpoints.
type Server struct {
	// Listen is host:port.
	Listen string
	// Gatherer provides /metrics.
	Gatherer prometheus.Gatherer
	// Checks decide /readyz; each runs with CheckTimeout.
	Checks       []Check
	CheckTimeout time.Duration
	// Status returns the /status document; it must not contain secrets.
	Status func(ctx context.Context) any
	// Pprof serves Go's profiler under /debug/pprof/.
	Pprof bool
	Log   *zap.Logger

	mu   sync.Mutex
	addr net.Addr
}

// Addr returns the address the server listens on once Run has started listening.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Handler returns the endpoints' handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		var doc any = map[string]any{}
		if s.Status != nil {
			doc = s.Status(r.Context())
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(doc)
	})
	if s.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// readyz runs every check concurrently and answers 200 when all pass, 503 naming each
// failing dependency and why otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	timeout := s.CheckTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make([]result, len(s.Checks))
	var wg sync.WaitGroup
	for i, c := range s.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = result{c.Name, c.Fn(ctx)}
		}()
	}
	wg.Wait()
	var failed []string
	for _, res := range results {
		if res.err != nil {
			failed = append(failed, res.name+": "+res.err.Error())
		}
	}
	sort.Strings(failed)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(failed) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, f := range failed {
			fmt.Fprintln(w, "not ready:", f)
		}
		return
	}
	fmt.Fprintln(w, "ready")
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", s.Listen, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if s.Log != nil {
		s.Log.Info("serving /metrics, /healthz, /readyz, /status", zap.String("listen", ln.Addr().String()))
	}
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server shutdown: %w", err)
	}
	return nil
}

// BuildInfo registers cleave_build_info{version,goversion} = 1 on reg.
func BuildInfo(reg prometheus.Registerer, version, goVersion string) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "cleave_build_info",
		Help: "A constant 1 labelled with the version of cleave and of Go it was built with.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, goVersion).Set(1)
	reg.MustRegister(g)
}
