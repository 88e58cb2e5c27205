"""Video: frames decoded from a container, filled through ``Inpainter.stream`` and encoded back
with the input's timestamps, audio and codec (``stream``).
"""
