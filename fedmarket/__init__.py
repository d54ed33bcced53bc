"""fedmarket platform layer: settings, errors and adapters to the chain, the content store,
the update encryption and the ML runtime. Imports only go down: flows -> tasks -> fedmarket -> schemas."""

__version__ = "0.1.0"
