"""Typed errors; each carries the exit code DESIGN.md fixes for its class."""

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_INFRA = 2
EXIT_INPUT = 3


class WqhError(Exception):
    exit_code = EXIT_INFRA

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  fix: {self.hint}" if self.hint else "")


class InputError(WqhError):
    """Bad user input: YAML, options, paths. Exit 3."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, hint: str = "", file: str = "", line: int = 0, key: str = ""):
        loc = file
        if file and line:
            loc = f"{file}:{line}"
        if key:
            loc = f"{loc}: key '{key}'" if loc else f"key '{key}'"
        super().__init__(f"{loc}: {message}" if loc else message, hint)
        self.file, self.line, self.key = file, line, key


class InfraError(WqhError):
    """Build failed, VM would not boot, tool missing. Exit 2."""

    exit_code = EXIT_INFRA


class ConfigError(InfraError):
    """A fragment asked for options that olddefconfig dropped."""
