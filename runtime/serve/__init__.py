"""`bilstm serve`: models behind HTTP (`pip install 'bilstm[serve]'`).

- `command.py`: the `bilstm serve` command (imports nothing heavy until it runs).
- `app.py`: the ASGI app (FastAPI on uvicorn): the task endpoint, the Open Inference
  Protocol (KServe v2 / Triton HTTP), health, `/metrics`, limits, API key, access log.
- `batching.py`: dynamic batching, one worker thread per model session.
- `oip.py`: Open Inference Protocol tensors (JSON and the binary tensor extension).
- `metrics.py`: the Prometheus metrics of one server.

Nothing here imports torch; FastAPI, uvicorn and prometheus-client are the `serve` extra.
"""
