"""Shipping: the OCI image, pushing it, and the deployment manifests."""
