"""Deployment of fitted models: ONNX export (export), inference runtimes (runtime),
the traceable graph pieces detectors build their export from (graph), and the web
service (server)."""
