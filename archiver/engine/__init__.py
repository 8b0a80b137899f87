"""The run: its lifecycle and outputs, the pipeline, one call's archiving, the assembly of its
parts, decisions, inputs and their feed, sync, the dry run, signals, the loop's lag, clocks,
check."""
