"""Task specs and graphs: pure, no IO."""
