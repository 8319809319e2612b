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
        self.detail = message  # without the location, to re-locate it (e.g. in a scenario)


class InfraError(WqhError):
    """Build failed, VM would not boot, tool missing. Exit 2."""

    exit_code = EXIT_INFRA


class ConfigError(InfraError):
    """A fragment asked for options that olddefconfig dropped."""


class InputErrors(InputError):
    """Every input error of one validation phase, reported together. Exit 3."""

    def __init__(self, errors: list[InputError]):
        self.errors = list(errors)
        first = self.errors[0]
        WqhError.__init__(self, first.message, first.hint)
        self.file, self.line, self.key = first.file, first.line, first.key
        self.detail = first.detail

    def __str__(self) -> str:
        if len(self.errors) == 1:
            return str(self.errors[0])
        body = "\n".join(f"  {str(e)}".replace("\n", "\n  ") for e in self.errors)
        return f"{len(self.errors)} input errors:\n{body}"


class Problems:
    """Collects input errors so one run reports them all, not the first only.

        probs = Problems()
        with probs.check():
            something_that_may_raise_InputError()
        probs.raise_if_any()
    """

    def __init__(self) -> None:
        self.errors: list[InputError] = []

    def add(self, e: InputError) -> None:
        if isinstance(e, InputErrors):
            self.errors += e.errors
        else:
            self.errors.append(e)

    def check(self):
        return _Catch(self)

    def raise_if_any(self) -> None:
        if self.errors:
            raise InputErrors(self.errors)

    def __bool__(self) -> bool:
        return bool(self.errors)


class _Catch:
    def __init__(self, probs: Problems):
        self.probs = probs

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if isinstance(exc, InputError):
            self.probs.add(exc)
            return True
        if isinstance(exc, (OSError, ValueError)) and not isinstance(exc, UnicodeError):
            # Checking a path the user gave can fail on the path itself (too long, a loop of
            # links, a NUL byte): that is the input's fault, said as such.
            what = getattr(exc, "filename", None)
            why = getattr(exc, "strerror", None) or str(exc)
            self.probs.add(InputError(f"{what}: {why}" if what else why,
                                      hint="check the paths given on the command line"))
            return True
        return False
