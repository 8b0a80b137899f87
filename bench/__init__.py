"""`make bench`: the figures of SPEC §11, measured by running the CLI as a user would."""
