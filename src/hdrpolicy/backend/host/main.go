// Command host runs a compiled proxy-wasm plug-in (plugin.wasm) inside the
// proxy-wasm Go SDK's own host emulator (proxytest, which runs the module in
// wazero) and drives many requests through one VM.
//
// It reads {"requests": [{"headers": [[name, value], ...]}, ...], "counters":
// [name, ...], "state": [key, ...]} as JSON on stdin and writes {"results":
// [...]} on stdout: per request, what the plug-in did, the named counters it
// incremented and the filter state keys it set. Names, values and bodies are
// byte strings, so they travel base64-encoded ([]byte in encoding/json).
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
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithVMContext(vm))
	defer reset()
	if host.StartVM() != types.OnVMStartStatusOK || host.StartPlugin() != types.OnPluginStartStatusOK {
		fail(fmt.Errorf("the plug-in did not start: %q", host.GetCriticalLogs()))
	}

	results := make([]result, 0, len(in.Requests))
	start := time.Now()
	for _, req := range in.Requests {
		before := counters(host, in.Counters)
		for _, key := range in.State {
			fail(host.SetProperty([]string{key}, unset))
		}
		res := run(host, req)
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
