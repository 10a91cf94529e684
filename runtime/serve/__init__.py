"""`bilstm serve`: models behind HTTP (`pip install 'bilstm[serve]'`).

- `command.py`: the `bilstm serve` command (imports nothing heavy until it runs).
- `app.py`: the ASGI app and its `Server`: the task endpoint, the Open Inference Protocol
  (KServe v2 / Triton HTTP) handlers, limits, API key.
- `asgi.py`: the app's outer layer (`Guard`) and the scoring routes' plain ASGI path,
  metrics and the JSON access log per request, clients that leave (499).
- `routes.py`: the FastAPI routes (health, metadata, metrics, docs).
- `parsing.py`: request bodies checked (JSON, parameters, OIP tensors).
- `scoring.py`: what the worker threads run (a batch scored, answers encoded).
- `batching.py`: dynamic batching, one worker thread per model session.
- `oip.py`: Open Inference Protocol tensors (JSON and the binary tensor extension).
- `metrics.py`: the Prometheus metrics of one server.

Nothing here imports torch; FastAPI, uvicorn and prometheus-client are the `serve` extra.
"""
