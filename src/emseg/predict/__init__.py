"""Model + Volume → probability maps, blockwise and resumable."""
