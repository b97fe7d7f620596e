"""What the commands share in their options: the checks of ``--out`` (one clear error before
any work) and the reading of comma-separated lists."""

from __future__ import annotations

from pathlib import Path

from hepgen.errors import OptionError


def check_output_file(out: Path) -> None:
    """``--out`` names a file to write: its folder must exist and it must not be a folder."""
    if not out.parent.exists():
        raise OptionError(f"--out: folder {out.parent} does not exist")
    if out.is_dir():
        raise OptionError(f"--out: {out} is a folder")


def check_output_folder(out: Path) -> None:
    """``--out`` names a folder to fill: it must not be a file and its parent must exist."""
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out: {out} exists and is not a folder")
    if not out.parent.exists():
        raise OptionError(f"--out: parent folder {out.parent} does not exist")


def comma_list(text: str) -> list[str]:
    """The items of a comma-separated option value, stripped, empty ones dropped
    (``"a, b,,"`` -> ``["a", "b"]``)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def classifier_recipe(hidden: str | None, dtype: str | None, prefix: str = "--classifier") -> dict:
    """Classifier options of ``hepgen evaluate calo`` / ``bench calo`` from the text of
    ``PREFIX-hidden`` (positive widths, comma-separated) and ``PREFIX-dtype`` (float32 or
    float64); options left out (None) are not in the result, so the protocol's own stay."""
    options: dict = {}
    if hidden is not None:
        try:
            widths = tuple(int(w) for w in comma_list(hidden))
        except ValueError:
            widths = ()
        if not widths or min(widths) < 1:
            raise OptionError(f"{prefix}-hidden: expected positive widths separated by commas, got {hidden!r}")
        options["hidden"] = widths
    if dtype is not None:
        if dtype not in ("float32", "float64"):
            raise OptionError(f"{prefix}-dtype: choose float32 or float64, got {dtype!r}")
        options["dtype"] = dtype
    return options


def require_positive(options: dict) -> None:
    """One clear error for the first option whose value is not > 0, in the form
    ``--num-jets must be positive, got 0``; options left out (None) are skipped and NaN is
    refused. ``options`` maps each option's flag to its value."""
    for flag, value in options.items():
        if value is not None and not value > 0:
            raise OptionError(f"{flag} must be positive, got {value}")
