"""The harness: a study is a list of tasks (entry × sampler spec × seed); each task run writes
one row to ``results.jsonl`` plus artifacts under ``runs/<run_id>/``."""
