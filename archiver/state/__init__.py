"""The SQLite truth: the state, its connection and group commits, the schema and its migrations,
what it holds of a call, the manifest's read view, the meta keys (watermarks, last run)."""
