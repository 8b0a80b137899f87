"""The manifest (schema 2) and run reports: the writer, the export, the JSON Schemas."""
