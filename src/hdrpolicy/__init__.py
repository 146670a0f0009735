"""hdrpolicy: compile a header policy into an Envoy proxy-wasm plug-in."""

__version__ = "0.1.0"
