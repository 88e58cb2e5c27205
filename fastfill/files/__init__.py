"""Files: images and masks as bytes (``codecs``), one run over folders of them on local threads
(``runner``) or on Ray Data (``ray``).

Engines and the :class:`~fastfill.inpainter.Inpainter` know arrays, not files: everything that
touches a path lives here (and in :mod:`fastfill.video` for video containers).
"""
