"""BatchPrediction: a pinned model version scored over a file by an Indexed Job, one shard per index.

`jobs` builds the Job and its headless Service from the resource (pure), `status` turns what the
cluster shows into the resource's status, conditions and Events (pure), and `handlers` is the thin kopf
layer that reads, writes and records."""
