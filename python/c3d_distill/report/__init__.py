"""The table and the plots of finished runs (``c3d-distill report``): ``write_report(paths, out)``."""

from .report import write_report
from .runs import NotARunError, Run, RunError, find_runs
from .table import markdown_table, table_rows

__all__ = ["NotARunError", "Run", "RunError", "find_runs", "markdown_table", "table_rows", "write_report"]
