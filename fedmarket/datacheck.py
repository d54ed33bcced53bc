"""Data checks with great-expectations: the task's `DataSchema` becomes an expectation suite that
the owner runs on its validation/test data at creation and every trainer runs on its local data
before registering. The summary keeps counts and pass/fail only: no rows, no values."""

from __future__ import annotations

import functools
import logging
import os
import threading

import numpy as np
import pandas as pd

from fedmarket.errors import DataValidationError
from fedmarket_schemas.market import DataSchema
from fedmarket_schemas.trainer import CheckResult, DataValidationSummary

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
_lock = threading.Lock()  # a GX ephemeral context is not thread-safe
_context = None


def _gx():
    global _context
    import great_expectations as gx

    if _context is None:
        for name in ("great_expectations", "great_expectations.data_context.types.base"):
            logging.getLogger(name).setLevel(logging.ERROR)
        _context = gx.get_context(mode="ephemeral")
        _context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
        _context.data_sources.add_pandas("fedmarket")
    return gx, _context


@functools.lru_cache(maxsize=8)
def suite_for(schema: DataSchema):
    """The schema's suite, built once per schema (2 + 2 per feature expectations: building the
    digits suite took about as long as validating a dataset with it). Columns carry the file's
    names, so a failed expectation names the column the owner or trainer knows."""
    gx, _ = _gx()
    suite = gx.ExpectationSuite(name="task-data")
    label = schema.label_column
    suite.add_expectation(gx.expectations.ExpectTableColumnCountToEqual(value=schema.feature_count + 1))
    suite.add_expectation(gx.expectations.ExpectTableRowCountToBeBetween(min_value=schema.min_rows))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=label))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeInSet(column=label, value_set=list(schema.labels)))
    low, high = (
        np.broadcast_to(schema.feature_min, schema.feature_count),
        np.broadcast_to(schema.feature_max, schema.feature_count),
    )
    for column, lo, hi in zip(schema.columns, low, high):
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
        suite.add_expectation(
            gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=float(lo), max_value=float(hi))
        )
    return suite


def frame(features: np.ndarray, labels: np.ndarray, schema: DataSchema | None = None) -> pd.DataFrame:
    features = np.asarray(features)
    if features.ndim != 2:
        raise DataValidationError(f"features must be a 2-D table, got shape {features.shape}")
    names = schema.columns if schema and len(schema.columns) == features.shape[1] else None
    df = pd.DataFrame(features, columns=list(names or (f"x{i}" for i in range(features.shape[1]))))
    df[schema.label_column if schema else "label"] = np.asarray(labels)
    return df


def check_dataset(
    features: np.ndarray, labels: np.ndarray, schema: DataSchema, *, dataset: str
) -> DataValidationSummary:
    """Validate a dataset against the task's schema; the summary says which checks failed."""
    df = frame(features, labels, schema)
    with _lock:
        _, context = _gx()
        source = context.data_sources.get("fedmarket")
        asset_name = f"{dataset}-{len(source.assets)}"
        batch = (
            source.add_dataframe_asset(asset_name)
            .add_batch_definition_whole_dataframe("all")
            .get_batch(batch_parameters={"dataframe": df})
        )
        # BASIC: counts without the partial lists of unexpected values, which the summary drops anyway
        result = batch.validate(suite_for(schema), result_format="BASIC")
        source.delete_asset(asset_name)
    checks = [
        CheckResult(
            expectation=r.expectation_config.type,
            column=r.expectation_config.kwargs.get("column"),
            success=bool(r.success),
            unexpected_count=int((r.result or {}).get("unexpected_count", 0) or 0),
        )
        for r in result.results
    ]
    return DataValidationSummary(dataset=dataset, rows=len(df), success=bool(result.success), checks=checks)


def require_valid(summary: DataValidationSummary) -> None:
    if not summary.success:
        failed = "; ".join(
            f"{c.expectation}{f'({c.column})' if c.column else ''}: {c.unexpected_count} unexpected"
            for c in summary.failures()[:5]
        )
        raise DataValidationError(f"{summary.dataset} fails the task's data expectations: {failed}")
