"""Measuring a model on labelled photos, numbers in and numbers out: verification metrics (``verification``), 1:1
thresholds at a target FAR (``far``), labelled pairs (``pairs``), open-set 1:N rates (``open_set``), and the report an
operator reads (``report``, ``plots``)."""
