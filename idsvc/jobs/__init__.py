"""The jobs: one module per operation over a ``Home`` — enroll, search, verify, identities (and the identity-name
rule), detection, embedding, thresholds, batch results, reindex and model upgrades (``upgrade``), doctor, archives,
copying a home to other backends (``home_copy``), calibration, evaluation, API keys and status. ``Service`` is the one
door to them."""
