// Command host runs a compiled proxy-wasm plug-in (plugin.wasm) inside the
// proxy-wasm Go SDK's own host emulator (proxytest, which runs the module in
// wazero) and drives many requests through one VM.
//
// It reads {"requests": [{"headers": [[name, value], ...]}, ...], "counters":
// [name, ...], "state": [key, ...]} as JSON on stdin and writes {"results":
// [...]} on stdout: per request, what the plug-in did, the named counters it
// incremented and the filter state keys it set. Names, values and bodies are
// byte strings, so they travel base64-encoded ([]byte in encoding/json).
//
// A request's pair named ":source.address" (hdrpolicy's codec.CLIENT_ADDRESS)
// is not a header: it is the client's address, served as Envoy serves it, as
// the source.address property (a request without one has no such property).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

type request struct {
	Headers [][2][]byte `json:"headers"`
}

type input struct {
	Requests []request `json:"requests"`
	Counters []string  `json:"counters"`
	State    []string  `json:"state"`
}

type localResponse struct {
	Status  uint32      `json:"status"`
	Headers [][2][]byte `json:"headers"`
	Body    []byte      `json:"body"`
}

type result struct {
	Action   string            `json:"action"`
	Response *localResponse    `json:"response"`
	Debug    []string          `json:"debug"`
	Errors   []string          `json:"errors"`
	Info     []string          `json:"info"`
	Trap     string            `json:"trap,omitempty"`
	Counters map[string]uint64 `json:"counters"`
	State    map[string][]byte `json:"state"`
}

// unset marks a filter state key the plug-in has not set during a request.
var unset = []byte("\x00unset")

func main() {
	if len(os.Args) != 2 {
		fail(fmt.Errorf("usage: host PLUGIN.wasm < requests.json"))
	}
	log.SetOutput(io.Discard) // the emulator echoes every log line to stderr
	wasm, err := os.ReadFile(os.Args[1])
	fail(err)
	var in input
	fail(json.NewDecoder(os.Stdin).Decode(&in))

	vm, err := proxytest.NewWasmVMContext(wasm)
	fail(err)
	defer vm.Close()
	e := &emulator{vm: vm}
	e.start()
	defer func() { e.reset() }()

	results := make([]result, 0, len(in.Requests))
	start := time.Now()
	for i := range in.Requests {
		req := &in.Requests[i]
		if err := e.serveClient(req); err != nil {
			fail(fmt.Errorf("request %d: %w", i+1, err))
		}
		host := e.host
		before := counters(host, in.Counters)
		for _, key := range in.State {
			fail(host.SetProperty([]string{key}, unset))
		}
		res := run(host, *req)
		res.Counters = map[string]uint64{}
		for name, value := range counters(host, in.Counters) {
			if value != before[name] {
				res.Counters[name] = value - before[name]
			}
		}
		res.State = map[string][]byte{}
		for _, key := range in.State {
			if value, err := host.GetProperty([]string{key}); err == nil && string(value) != string(unset) {
				res.State[key] = append([]byte{}, value...)
			}
		}
		results = append(results, res)
	}
	elapsed := time.Since(start)
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	fail(enc.Encode(map[string]any{"results": results, "run_ns": elapsed.Nanoseconds()}))
}

// An emulator is the SDK's host emulator running the plug-in, and whether it
// has a client address to serve.
type emulator struct {
	vm     types.VMContext
	host   proxytest.HostEmulator
	reset  func()
	client bool
}

// start (re)starts the host emulator: the VM and the plug-in, as a proxy does.
func (e *emulator) start() {
	if e.reset != nil {
		e.reset()
	}
	e.host, e.reset = proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(e.vm))
	e.client = false
	if e.host.StartVM() != types.OnVMStartStatusOK || e.host.StartPlugin() != types.OnPluginStartStatusOK {
		fail(fmt.Errorf("the plug-in did not start: %q", e.host.GetCriticalLogs()))
	}
}

// sourceAddress is the property Envoy serves the client's address as.
var sourceAddress = []string{"source", "address"}

// serveClient takes the request's client address out of its headers (the
// first ":source.address" pair, in any case) and serves it as source.address.
// The emulator cannot remove a property, so a request without one after a
// request with one gets a fresh emulator; nor can it serve an empty one
// (Envoy's never is): that is an error.
func (e *emulator) serveClient(req *request) error {
	var client []byte
	found := false
	headers := req.Headers[:0:0]
	for _, kv := range req.Headers {
		if !isClientAddress(kv[0]) {
			headers = append(headers, kv)
		} else if !found {
			client, found = kv[1], true
		}
	}
	req.Headers = headers
	switch {
	case found && len(client) == 0:
		return fmt.Errorf("an empty client address (:source.address) cannot be served")
	case found:
		e.client = true
		return e.host.SetProperty(sourceAddress, client)
	case e.client:
		e.start()
	}
	return nil
}

// isClientAddress reports whether a pair's name is ":source.address" in any
// ASCII case (as the evaluator folds names).
func isClientAddress(name []byte) bool {
	const want = ":source.address"
	if len(name) != len(want) {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// counters are the named counters' values (a counter not defined is left out).
func counters(host proxytest.HostEmulator, names []string) map[string]uint64 {
	out := map[string]uint64{}
	for _, name := range names {
		if value, err := host.GetCounterMetric(name); err == nil {
			out[name] = value
		}
	}
	return out
}

func run(host proxytest.HostEmulator, req request) (res result) {
	debugBefore, errorsBefore := len(host.GetDebugLogs()), len(host.GetErrorLogs())
	infoBefore := len(host.GetInfoLogs())
	defer func() {
		if r := recover(); r != nil {
			res.Trap = fmt.Sprint(r)
		}
		res.Debug = append([]string{}, host.GetDebugLogs()[debugBefore:]...)
		res.Errors = append([]string{}, host.GetErrorLogs()[errorsBefore:]...)
		res.Info = append([]string{}, host.GetInfoLogs()[infoBefore:]...)
	}()
	headers := make([][2]string, len(req.Headers))
	for i, kv := range req.Headers {
		headers[i] = [2]string{string(kv[0]), string(kv[1])}
	}
	id := host.InitializeHttpContext()
	switch host.CallOnRequestHeaders(id, headers, true) {
	case types.ActionContinue:
		res.Action = "continue"
	case types.ActionPause:
		res.Action = "pause"
	default:
		res.Action = "other"
	}
	if lr := host.GetSentLocalResponse(id); lr != nil {
		res.Response = &localResponse{Status: lr.StatusCode, Body: lr.Data, Headers: [][2][]byte{}}
		for _, kv := range lr.Headers {
			res.Response.Headers = append(res.Response.Headers, [2][]byte{[]byte(kv[0]), []byte(kv[1])})
		}
	}
	host.CompleteHttpContext(id)
	return res
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		os.Exit(2)
	}
}
