"""The back end: checked IR → Go sources → plugin.wasm, and running it in the emulator."""
