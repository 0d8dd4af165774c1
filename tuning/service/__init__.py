"""Services: what a command does, as phases in order, between the packages and the command line."""
