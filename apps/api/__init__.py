"""HTTP plumbing that knows no domain: reading request bodies within their limits, negotiating
JSON or XML from Accept, rendering documents and event streams."""
