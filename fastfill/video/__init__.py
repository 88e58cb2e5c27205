"""Video: frames decoded from a container, filled through ``Inpainter.stream`` and encoded back
with the input's timestamps, audio and codec (``stream``); holes filled first from the frames
around them where the camera's motion shows what they hide (``propagate``, with the motion
estimate of ``motion``).
"""
