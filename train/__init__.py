"""fastfill's training package (PyTorch; `pip install 'fastfill[train]'`).

Modules: kinds (KINDS, the one registry of model kinds: one adapter each), models (Context
Encoder, GLCIC completion net and discriminators), config (TrainConfig, no torch), data (image
folder dataset; the masks are fastfill.masks), losses, loop (the training loop; `fastfill
train`), checkpoint (safetensors + JSON), evaluate (`fastfill evaluate`), export (ONNX).
Dependencies run train -> fastfill: nothing here is imported by the runtime package `fastfill`
at import time.
"""
