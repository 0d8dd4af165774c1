"""One thin entry point per CLI command (sweep, train, predict, report): parse, validate, call the library."""
