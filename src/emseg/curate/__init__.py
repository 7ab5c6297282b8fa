"""CEM500K curation: patches, dHash deduplication, informativeness filter, patch store."""
