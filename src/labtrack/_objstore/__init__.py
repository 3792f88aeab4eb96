"""Runs in object storage (S3 and other fsspec back ends): write, upload, mirror, read.

The run directory in a bucket is the same format as on disk (docs/format.md), under
``<prefix>/<experiment>/<run-id>/``; object storage has no append, so an append-only file
(series CSVs, console.log, text and histogram JSONL, media.jsonl) is uploaded as immutable
segments named by their offset and published by small manifest deltas, and compacted into
one object at its plain path when the run ends. docs/object-storage.md describes the layout.

Modules, bottom up:

* :mod:`.store` -- ``ObjectStore(url)``: the fsspec file system (s3fs imported lazily) and
  the key checks (`check_key_part`, `check_run_relpath`).
* :mod:`.manifest` -- pure: key names, delta/manifest encoding, folding them into a `RunState`.
* :mod:`.run` -- ``ObjectRun(store, experiment, run_id, writer=None)``, the synchronous API
  for any writer (the training uploader, `labtrack sync`, a server's ingest)::

      put_segment(relpath, offset, data) -> key        # not visible until a delta names it
      put_segments([(relpath, offset, data), ...])     # concurrent PUTs
      put_whole(relpath, data); put_whole_stream(relpath, chunks) -> size
      delete(relpath)
      write_manifest_delta(segments={rel: [(off, n)]}, files={rel: (size, mtime_ns)},
                           deleted=[rel], packed=None) -> delta name   # publishes the batch
      pack([(relpath, offset, data), ...]) -> (name, bytes, positions)
                               # packed=(name, positions, bytes): the appends and the delta
                               # in one object, one PUT (a server's ingest batch)
      piece_key(relpath, piece) -> key   # the object that holds a piece
      state() -> RunState      # manifest.json + deltas merged; .sizes() -> {rel: (size, mtime)}
      read_range(relpath, piece, start, end) -> bytes
      fold_deltas() -> int     # deltas folded into manifest.json (long runs)
      compact(local_dir=None) -> CompactReport   # plain objects; segments and deltas deleted

* :mod:`.client` -- ``ObjectClient(store)``: the ingest client's calls (hello, sizes, batch,
  put_file) answered by a bucket, so `labtrack._remote.upload.RunUploader` replicates a
  spool to a bucket with the code it uses for a server.
* :mod:`.ship` -- the training side: ``object_shipper(...)`` (the Run's background thread)
  and ``sync_to_bucket(run_dirs, url)`` (`labtrack sync --remote s3://...`).
* :mod:`.spool` -- ``spool_dir(url)``, ``mirror_dir(url)``, ``resolve_root(root, remote)``.
* :mod:`.mirror` -- ``Mirror(url, cache_dir).sync() -> MirrorStats``: a local copy of a
  bucket's runs, fetching only new deltas, segments and changed files.
* :mod:`.book` -- ``ObjectBook``: `labtrack.open("s3://...")`, a read-only Book over a Mirror.

Only :mod:`.spool` and :mod:`.store`'s `is_object_url` are imported on the training thread;
fsspec and s3fs are imported by the shipper's thread, the mirror and the book.
"""
