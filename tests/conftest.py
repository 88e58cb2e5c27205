"""Shared test set-up: tests marked `gpu` skip with a reason when no usable NVIDIA GPU is present."""

import pytest


def _gpu_skip_reason():
    try:
        from fastfill import ops
    except ImportError as e:  # the native module is not built
        return f"fastfill._C is not importable: {e}"
    info = ops.build_info()
    if "cuda" not in info["backends"]:
        return "fastfill._C was built without CUDA kernels"
    if info["cuda_device_count"] == 0:
        return f"no usable NVIDIA GPU: {info['cuda_runtime_status']}"
    return None


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))
