"""Entry point of the ``hepgen`` command (Typer).

Every user error surfaces as one line ``hepgen: error: ...`` on stderr with exit
status 2; nothing already written is touched by a failing command.
"""

from __future__ import annotations

import sys
import warnings

import typer

from hepgen.cli.anomaly import app as anomaly_app
from hepgen.cli.bench import app as bench_app
from hepgen.cli.data import app as data_app
from hepgen.cli.evaluate import app as evaluate_app
from hepgen.cli.models import calibrate, models, sample, student, train
from hepgen.cli.study import app as study_app
from hepgen.errors import HepgenError

app = typer.Typer(
    name="hepgen",
    help="Fast generative surrogates for particle-physics simulation, judged by the field's metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(bench_app, name="bench")
app.add_typer(study_app, name="study")
app.add_typer(anomaly_app, name="anomaly")
app.command("train")(train)
app.command("sample")(sample)
app.command("models")(models)
app.command("student")(student)
app.command("calibrate")(calibrate)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from hepgen import __version__

        typer.echo(__version__)
        raise typer.Exit()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"hepgen: warning: {message}\n"


def error(message: str) -> None:
    print(f"hepgen: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from hepgen.device import keep_freed_memory

    warnings.formatwarning = _one_line_warning
    keep_freed_memory()
    try:
        app(args=argv, standalone_mode=False)
    except HepgenError as exc:
        error(str(exc))
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        error("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, ...
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message())
            return 0
        error(exc.format_message().replace("\n", " "))
        return getattr(exc, "exit_code", 2) or 2
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
