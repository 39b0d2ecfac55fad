"""The idsvc command line: a thin Typer + Rich skin over the ``idsvc`` library."""
