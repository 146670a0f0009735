module canary

go 1.19

require (
	github.com/tetratelabs/proxy-wasm-go-sdk v0.24.0
	github.com/wasilibs/nottinygc v0.7.1
)

require (
	github.com/magefile/mage v1.14.0 // indirect
	github.com/tetratelabs/wazero v1.7.2 // indirect
)
