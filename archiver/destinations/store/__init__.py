"""S3, Google Cloud Storage and Azure Blob Storage through obstore: the bucket destination, its
client and errors, uploads, the lease, state snapshots, verify."""
