"""Real Envoy: configs, starting and stopping it, raw clients and an echo upstream."""
