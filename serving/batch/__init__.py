"""Batch prediction: score a CSV or Parquet file with one pinned model version, streamed in bounded
blocks, with serving's signature checks and fast path (`mlrollout-batch`, and the shards of a
BatchPrediction's Indexed Job)."""
