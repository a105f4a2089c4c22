"""The study's configuration error, in a module with no imports of its own.

`lib.config` re-exports it (`from lib.config import ConfigError` is the same class), and
modules that need no more of lib.config, such as lib.components, import it from here, so that
they import no config code.
"""


class ConfigError(ValueError):
    """A parameter file or override that does not fit the schema."""
