"""Faces from photos: decoding untrusted bytes (``images``), finding faces and their five landmarks (``detect``, with
MTCNN's cascade in ``mtcnn``), aligning them onto a template (``align``), measuring their quality (``quality``), and
the reader that turns a photo into the aligned crop of its main face (``reader``). Knows nothing of encoders or
storage."""
