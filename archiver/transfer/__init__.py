"""A presigned URL to a verified `.part`, with no credentials: the download, the body's checks,
audio detection, the shared bandwidth."""
