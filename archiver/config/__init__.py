"""The settings model and its sources: every setting, the values they take, where the token and
config file come from, where an archive lives."""
