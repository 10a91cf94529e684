"""What training and inference share, so that they can never disagree: errors, the tokenizer,
vocabulary and text encoding, data readers, metrics, and where a command may write.

Both `bilstm.models` (training) and `bilstm.runtime` (inference) import this package; it
imports neither of them, nor torch or onnx (a ruff rule and a test keep it so).
"""
