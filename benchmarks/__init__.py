"""Benchmarks of the bilstm runtime against PyTorch; run each as `python -m benchmarks.NAME`."""
