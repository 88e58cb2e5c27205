"""fastfill's training package (PyTorch; `pip install 'fastfill[train]'`).

Modules: models (Context Encoder, GLCIC completion net and discriminators), data (image folder
dataset), masks (mask generators), losses, loop (the training loops; `fastfill train`),
checkpoint (safetensors + JSON), evaluate (`fastfill evaluate`), export (ONNX).
Nothing here is imported by the runtime package `fastfill` at import time.
"""
