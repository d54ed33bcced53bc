from __future__ import annotations

import pytest

from fedmarket.datacheck import check_dataset, require_valid
from fedmarket.errors import DataValidationError
from fedmarket.ml.data import load_digits_dataset
from fedmarket_schemas.market import DataSchema

SCHEMA = DataSchema()


@pytest.fixture
def digits():
    d = load_digits_dataset()
    return d.features[:100].copy(), d.labels[:100].copy()


def test_valid_data_passes_and_summary_has_no_rows(digits):
    summary = check_dataset(*digits, SCHEMA, dataset="ok")
    assert summary.success and summary.rows == 100
    assert len(summary.checks) == 4 + 2 * 64
    dumped = summary.model_dump_json()
    assert "16.0" not in dumped and "partial_unexpected" not in dumped


def test_out_of_range_feature_is_named(digits):
    x, y = digits
    x[7, 12] = 99.0
    summary = check_dataset(x, y, SCHEMA, dataset="bad-range")
    (failure,) = summary.failures()
    assert failure.column == "x12" and failure.unexpected_count == 1
    with pytest.raises(DataValidationError, match=r"x12\): 1 unexpected"):
        require_valid(summary)


def test_unknown_label_and_wrong_width(digits):
    x, y = digits
    y[0] = 42
    assert [c.column for c in check_dataset(x, y, SCHEMA, dataset="bad-label").failures()] == ["label"]
    narrow = check_dataset(x[:, :60], digits[1], SCHEMA, dataset="narrow")
    assert not narrow.success
    assert any(c.expectation == "expect_table_column_count_to_equal" for c in narrow.failures())
