"""Deployment of fitted models: ONNX export (export), inference runtimes (runtime;
OpenVINO in openvino and ir_cache), the parity gate every non-eager runtime passes
(parity), ``--runtime auto``'s measured choice (choice), the traceable graph pieces
detectors build their export from (graph), and the web service (server)."""
