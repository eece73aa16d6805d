"""The behaviours of the differential suite, one module per area; importing registers them."""

from behaviours import basic, deadletter, exchanges, features, frames, queues  # noqa: F401
