# Copyright: lifeboat developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# PRIVATE to the lifeboat.ops collection while it is 0.x: this library file may change in any release.
# Use the modules, roles, playbooks and the lifeboat command, not this file (docs/architecture.md).
"""Metrics for node_exporter's textfile collector: Prometheus text exposition format 0.0.4, written atomically.

The backup health check (``_status``) and the host's probe runner (roles/healthcheck) write through this.
Standard library only: the probe runner imports it on hosts.
"""

from __future__ import annotations

import os
import typing as t

from ._common import LifeboatError
from ._files import write_file_atomic

Labels = t.Mapping[str, str]
Sample = tuple[Labels, float]  # an int is a float here (PEP 484's numeric tower)
# A metric family: its name, its help text and its samples. Every family is a gauge.
Family = tuple[str, str, t.Sequence[Sample]]


def text(families: t.Iterable[Family]) -> str:
    """The exposition text of ``families``, in their order; a family without samples is left out."""
    lines: list[str] = []
    for name, help_text, samples in families:
        if samples:
            lines += [f"# HELP {name} {escape_help(help_text)}", f"# TYPE {name} gauge"]
            lines += [f"{name}{labels(sample_labels)} {number(value)}" for sample_labels, value in samples]
    return "\n".join(lines) + "\n"


def write_textfile(path: str, content: str) -> None:
    """Replace ``path`` atomically, mode 0644 (node_exporter runs as another user).

    The temporary file (``NAME.prom.partial-PID``) does not end in .prom, so node_exporter never reads it half-written.
    """
    write_file_atomic(path, content.encode("utf-8"), 0o644)


def number(value: float | int) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def labels(mapping: Labels) -> str:
    if not mapping:
        return ""
    return "{" + ",".join(f'{key}="{escape_label(value)}"' for key, value in mapping.items()) + "}"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(help_text: str) -> str:
    return help_text.replace("\\", "\\\\").replace("\n", "\\n")


def read_metrics(path: str) -> str | None:
    """The current content of a metrics file, or None when there is none yet."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LifeboatError(f"cannot read metrics file {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def validate_metrics_path(path: str) -> None:
    if not path or not os.path.isabs(path):
        raise LifeboatError(f"metrics_file '{path}' must be an absolute path")
    if not path.endswith(".prom"):
        raise LifeboatError(f"metrics_file {path} must end in .prom: node_exporter's textfile collector reads only those")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise LifeboatError(f"the directory of metrics_file {path} does not exist; create {directory} "
                            "(node_exporter's --collector.textfile.directory) or point metrics_file elsewhere")


def write_metrics(path: str, text: str) -> None:
    """Replace ``path`` atomically, mode 0644 (node_exporter runs as another user): the temporary file is not a .prom file."""
    validate_metrics_path(path)
    try:
        write_textfile(path, text)
    except OSError as exc:
        raise LifeboatError(f"cannot write metrics file {path}: {exc.strerror}") from exc
