"""dlcli: a config-driven deep-learning CLI built on tf.keras."""

__version__ = "0.1.0"
