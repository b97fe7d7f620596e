"""Task models assembled from blocks (jet, shower and event generators)."""
