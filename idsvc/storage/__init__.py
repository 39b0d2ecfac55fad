"""Where a home keeps things: the registry, the source of truth (``registry`` over ``schema``), the vector stores that
can always be rebuilt from it (the ``vectors`` interface, ``faiss_store`` over ``faiss_index`` and ``manifest``,
``milvus``, chosen by ``backends``), the template → identity map (``owners``), the crops (``crops``), the write lock
(``write_lock``) and the evaluation cache (``embedding_cache``). Knows nothing of faces or encoders: the active
model's version and dimension are handed in."""
